-- Forgets what Kafka acknowledged: outbox entries, and timers the decisions cancelled.
-- A saga's pending-outbox hint goes once its outbox is empty.
-- KEYS[1] pending-outbox zset, KEYS[2] timers zset, KEYS[3..] saga hashes.
-- ARGV per saga: saga_id, n_ids, n_cancelled, message ids..., cancelled timer members...
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
    redis.call('HDEL', key, unpack(fields))
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
    redis.call('ZREM', KEYS[2], unpack(members))
  end
end
return 1
