-- Writes index hints of one index shard (one hash tag, one slot): timers, pending-outbox
-- hints, status entries and the correlation index (keys.py).
-- KEYS: the keys the ops name. ARGV: per op, kind, key index, member, value:
--   T  ZADD a timer due `value` ms after now on this server's clock (TIME), the clock
--      claim_timers.lua claims by: no instance's own clock decides when a timer fires
--   D  the same, XX: a deferred timer its saga cancelled meanwhile stays gone
--   Z  ZADD with score `value`        X  the same, XX (a hint dropped meanwhile stays gone)
--   z  ZREM        S  SADD        s  SREM
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #ARGV, 4 do
  local kind, key, member, value = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if kind == 'T' then
    redis.call('ZADD', key, now + tonumber(value), member)
  elseif kind == 'D' then
    redis.call('ZADD', key, 'XX', now + tonumber(value), member)
  elseif kind == 'Z' then
    redis.call('ZADD', key, value, member)
  elseif kind == 'X' then
    redis.call('ZADD', key, 'XX', value, member)
  elseif kind == 'z' then
    redis.call('ZREM', key, member)
  elseif kind == 'S' then
    redis.call('SADD', key, member)
  elseif kind == 's' then
    redis.call('SREM', key, member)
  else
    return redis.error_reply('index_ops: unknown op ' .. tostring(kind))
  end
end
return 1
