-- Writes a batch of decisions; each saga's write applies only if nobody wrote that
-- saga since it was read (compare-and-set on its version), and a lost one writes nothing.
-- KEYS[1] timers zset, KEYS[2] pending-outbox zset, then per write its saga hash and its
-- start marker (same hash tag).
-- ARGV[1] status index key prefix, ARGV[2] retention of finished sagas (ms), ARGV[3]
-- retention of start markers (ms), then per write:
--   saga_id, expected_version, state_json, finished ('1'/'0'), updated_ms, status,
--   previous_status ('' for a new saga), start_digest ('' for none), n_seen, n_out, n_timers,
--   n_add, n_remove, then n_seen consumed message ids, n_out (message_id, record), n_timers
--   (member, delay_ms), n_add then n_remove correlation index sets (keys.py: wait_index)
--   the saga id joins or leaves.
-- A write that creates its saga (expected version 0) with a start digest sets the start
-- marker; a write that finishes its saga renews the marker, so it outlives the saga.
-- A timer is due delay_ms after now on the server's clock (TIME), the clock claim_timers.lua
-- claims by: no instance's own clock decides when a timer fires.
-- Returns per write the new version, or -1 for a lost compare-and-set.
-- Lua's unpack fails past about 8,000 values, so no call unpacks a list that grows with
-- the data: `chunked` sends it in slices of 500 (an even size keeps field/value pairs).
local function chunked(command, key, values)
  for i = 1, #values, 500 do
    redis.call(command, key, unpack(values, i, math.min(i + 499, #values)))
  end
end
local timers, pending = KEYS[1], KEYS[2]
local status_prefix, retention, start_retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local results = {}
local a = 4
for k = 3, #KEYS, 2 do
  local key, marker = KEYS[k], KEYS[k + 1]
  local saga_id, expected, state = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local finished, updated = ARGV[a + 3] == '1', ARGV[a + 4]
  local status, previous, digest = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  local n_seen, n_out, n_timers = tonumber(ARGV[a + 8]), tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10])
  local n_add, n_remove = tonumber(ARGV[a + 11]), tonumber(ARGV[a + 12])
  a = a + 13
  local current = tonumber(redis.call('HGET', key, 'v') or '0')
  if current ~= expected then
    results[#results + 1] = -1
    a = a + n_seen + 2 * n_out + 2 * n_timers + n_add + n_remove
  else
    local fields = {'v', current + 1, 's', state}
    if not finished then
      for _ = 1, n_seen do
        fields[#fields + 1] = 'm:' .. ARGV[a]
        fields[#fields + 1] = '1'
        a = a + 1
      end
    else
      a = a + n_seen
    end
    for _ = 1, n_out do
      fields[#fields + 1] = 'o:' .. ARGV[a]
      fields[#fields + 1] = ARGV[a + 1]
      a = a + 2
    end
    chunked('HSET', key, fields)
    if expected == 0 and digest ~= '' then
      redis.call('SET', marker, digest, 'PX', start_retention)
    end
    if finished then
      -- A finished saga turns every later message away by its status alone: its
      -- consumed ids are dead weight for the whole retention.
      local seen = {}
      for _, f in ipairs(redis.call('HKEYS', key)) do
        if string.sub(f, 1, 2) == 'm:' then seen[#seen + 1] = f end
      end
      chunked('HDEL', key, seen)
      redis.call('PEXPIRE', key, retention)
      redis.call('PEXPIRE', marker, start_retention)  -- a no-op for a saga without one
    end
    if n_out > 0 then redis.call('ZADD', pending, 'NX', updated, saga_id) end
    for _ = 1, n_timers do
      redis.call('ZADD', timers, now + tonumber(ARGV[a + 1]), ARGV[a])
      a = a + 2
    end
    for _ = 1, n_add do
      redis.call('SADD', ARGV[a], saga_id)
      a = a + 1
    end
    for _ = 1, n_remove do
      redis.call('SREM', ARGV[a], saga_id)
      a = a + 1
    end
    if status ~= previous then
      if previous ~= '' then redis.call('ZREM', status_prefix .. previous, saga_id) end
      redis.call('ZADD', status_prefix .. status, updated, saga_id)
    end
    results[#results + 1] = current + 1
  end
end
return results
