-- Reads a batch of sagas in one call, with the start markers of those being started.
-- KEYS: per saga its hash, then its start marker when ARGV asks for it.
-- ARGV: per saga, how many message ids are asked about, '1' if its start marker is
--   wanted (its key follows the hash in KEYS) else '0', then the message ids.
-- Returns per saga {version, state, start marker, then per asked id: '1' if consumed}
-- (nil where absent, and for a marker not asked about).
local out = {}
local a = 1
local k = 1
while k <= #KEYS do
  local key = KEYS[k]
  local n, wants_marker = tonumber(ARGV[a]), ARGV[a + 1] == '1'
  a = a + 2
  k = k + 1
  local marker = false
  if wants_marker then
    marker = redis.call('GET', KEYS[k])
    k = k + 1
  end
  local fields = {'v', 's'}
  for _ = 1, n do
    fields[#fields + 1] = 'm:' .. ARGV[a]
    a = a + 1
  end
  -- unpack fails past about 8,000 values: ask in slices of 500, whatever the batch
  local got_all = {}
  for j = 1, #fields, 500 do
    local got = redis.call('HMGET', key, unpack(fields, j, math.min(j + 499, #fields)))
    for g = 1, #got do got_all[j + g - 1] = got[g] end
  end
  local row = {got_all[1], got_all[2], marker}
  for f = 3, #got_all do row[#row + 1] = got_all[f] end
  out[#out + 1] = row
end
return out
