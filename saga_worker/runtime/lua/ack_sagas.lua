-- Forgets outbox entries Kafka acknowledged (or the sweeper republished), for the sagas
-- of one hash slot. The pending-outbox hints are another slot's: store.py drops them.
-- KEYS: saga hashes; ARGV per saga: n_ids, then its message ids.
-- Lua's unpack fails past about 8,000 values, so no call unpacks a list that grows with
-- the data: `chunked` sends it in slices of 500.
local function chunked(command, key, values)
  for i = 1, #values, 500 do
    redis.call(command, key, unpack(values, i, math.min(i + 499, #values)))
  end
end
local a = 1
for k = 1, #KEYS do
  local n_ids = tonumber(ARGV[a])
  a = a + 1
  local fields = {}
  for _ = 1, n_ids do
    fields[#fields + 1] = 'o:' .. ARGV[a]
    a = a + 1
  end
  chunked('HDEL', KEYS[k], fields)
end
return 1
