-- Writes the sagas of one hash slot; each saga's write applies only if nobody wrote that
-- saga since it was read (compare-and-set on its version), and a lost one writes nothing.
-- Its index hints (timers, pending outbox, status, correlation index) are other slots'
-- keys: store.py writes them with index_ops.lua before this call (see store.py).
-- KEYS per write: its saga hash and its start marker (same hash tag).
-- ARGV[1] retention of finished sagas (ms), ARGV[2] retention of start markers (ms), then
-- per write: expected_version, state_json, finished ('1'/'0'), start_digest ('' for none),
--   n_seen, n_out, then n_seen consumed message ids and n_out (message_id, record).
-- A write that creates its saga (expected version 0) with a start digest sets the start
-- marker; a write that finishes its saga renews the marker, so it outlives the saga.
-- Returns per write the new version, or -1 for a lost compare-and-set.
-- Lua's unpack fails past about 8,000 values, so no call unpacks a list that grows with
-- the data: `chunked` sends it in slices of 500 (an even size keeps field/value pairs).
local function chunked(command, key, values)
  for i = 1, #values, 500 do
    redis.call(command, key, unpack(values, i, math.min(i + 499, #values)))
  end
end
local retention, start_retention = tonumber(ARGV[1]), tonumber(ARGV[2])
local results = {}
local a = 3
for k = 1, #KEYS, 2 do
  local key, marker = KEYS[k], KEYS[k + 1]
  local expected, state = tonumber(ARGV[a]), ARGV[a + 1]
  local finished, digest = ARGV[a + 2] == '1', ARGV[a + 3]
  local n_seen, n_out = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  a = a + 6
  local current = tonumber(redis.call('HGET', key, 'v') or '0')
  if current ~= expected then
    results[#results + 1] = -1
    a = a + n_seen + 2 * n_out
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
    results[#results + 1] = current + 1
  end
end
return results
