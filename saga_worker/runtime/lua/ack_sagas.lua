-- Forgets what Kafka acknowledged: outbox entries, and timers the decisions cancelled.
-- A saga's pending-outbox hint goes once its outbox is empty.
-- KEYS[1] pending-outbox zset, KEYS[2] timers zset, KEYS[3..] saga hashes.
-- ARGV per saga: saga_id, n_ids, n_cancelled, message ids..., cancelled timer members...
-- Lua's unpack fails past about 8,000 values, so no call unpacks a list that grows with
-- the data: `chunked` sends it in slices of 500 (an even size keeps field/value pairs).
local function chunked(command, key, values)
  for i = 1, #values, 500 do
    redis.call(command, key, unpack(values, i, math.min(i + 499, #values)))
  end
end
local a = 1
for k = 3, #KEYS do
  local key = KEYS[k]
  local saga_id, n_ids, n_cancelled = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  if n_ids > 0 then
    local fields = {}
    for _ = 1, n_ids do
      fields[#fields + 1] = 'o:' .. ARGV[a]
      a = a + 1
    end
    chunked('HDEL', key, fields)
    local left = false
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if string.sub(f, 1, 2) == 'o:' then
        left = true
        break
      end
    end
    if not left then redis.call('ZREM', KEYS[1], saga_id) end
  end
  if n_cancelled > 0 then
    local members = {}
    for _ = 1, n_cancelled do
      members[#members + 1] = ARGV[a]
      a = a + 1
    end
    chunked('ZREM', KEYS[2], members)
  end
end
return 1
