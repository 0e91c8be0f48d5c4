-- The sweeper's read: the outbox entries of up to `limit` sagas whose pending hint is
-- older than older_than_ms. A hint whose saga hash is gone (its retention ran out) or
-- holds no outbox entry is dropped on the way, so dead hints never fill the limit and
-- hide live ones. At most 10 * limit hints are looked at per call; later calls go on.
-- KEYS[1] the pending-outbox zset; ARGV: older_than_ms, limit, saga key prefix, suffix.
-- Returns per live hint {saga_id, {field, value, ...}} of its `o:` fields.
local pending, older, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local prefix, suffix = ARGV[3], ARGV[4]
local found, kept, looked = {}, 0, 0
while kept < limit and looked < 10 * limit do
  local page = math.min(limit, 10 * limit - looked)
  local ids = redis.call('ZRANGEBYSCORE', pending, '-inf', older, 'LIMIT', kept, page)
  if #ids == 0 then break end
  looked = looked + #ids
  for _, saga_id in ipairs(ids) do
    local entries = {}
    local row = redis.call('HGETALL', prefix .. saga_id .. suffix)
    for i = 1, #row, 2 do
      if string.sub(row[i], 1, 2) == 'o:' then
        entries[#entries + 1] = row[i]
        entries[#entries + 1] = row[i + 1]
      end
    end
    if #entries == 0 then
      redis.call('ZREM', pending, saga_id)
    elseif kept < limit then
      kept = kept + 1
      found[kept] = {saga_id, entries}
    end
  end
end
return found
