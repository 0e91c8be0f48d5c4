-- Leases due timers: pushes their score past now + lease so other instances skip
-- them while this one fires them. A crashed instance's lease simply runs out.
-- "Now" is the Redis server's clock, as in save_sagas.lua, which stores due times
-- on it: every instance claims by the same clock, whatever its own says.
-- KEYS[1] the timers zset; ARGV: lease_ms, limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local until_ms = now + tonumber(ARGV[1])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], until_ms, member)
end
return due
