-- Leases due timers: pushes their score past now + lease so other instances skip
-- them while this one fires them. A crashed instance's lease simply runs out.
-- KEYS[1] the timers zset; ARGV: now_ms, lease_ms, limit
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], until_ms, member)
end
return due
