-- Drops acknowledged outbox entries, and the saga's pending-outbox hint once none are left.
-- KEYS[1] the saga hash, KEYS[2] the pending-outbox zset; ARGV[1] saga id, ARGV[2..] message ids.
for i = 2, #ARGV do
  redis.call('HDEL', KEYS[1], 'o:' .. ARGV[i])
end
local fields = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(fields) do
  if string.sub(f, 1, 2) == 'o:' then
    return 0
  end
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
