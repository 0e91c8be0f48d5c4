-- Ends the lease of claimed timers: forgets those done with (fired, or dropped), and
-- puts the deferred ones back, due again retry_ms from now on the server's clock.
-- XX: a deferred timer that its saga cancelled meanwhile stays gone.
-- KEYS[1] the timers zset; ARGV: retry_ms, n_deferred, deferred members..., done members...
-- Lua's unpack fails past about 8,000 values, so no call unpacks a list that grows with
-- the data: `chunked` sends it in slices of 500 (an even size keeps field/value pairs).
local function chunked(command, key, values)
  for i = 1, #values, 500 do
    redis.call(command, key, unpack(values, i, math.min(i + 499, #values)))
  end
end
local t = redis.call('TIME')
local again = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local n_deferred = tonumber(ARGV[2])
for i = 3, 2 + n_deferred do
  redis.call('ZADD', KEYS[1], 'XX', again, ARGV[i])
end
local done = {}
for i = 3 + n_deferred, #ARGV do
  done[#done + 1] = ARGV[i]
end
chunked('ZREM', KEYS[1], done)
return 1
