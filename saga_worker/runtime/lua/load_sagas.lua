-- Reads a batch of sagas in one call.
-- KEYS: the saga hashes. ARGV: per saga, how many message ids are asked about, then them.
-- Returns per saga {version, state, then per asked id: '1' if consumed} (nil where absent).
local out = {}
local a = 1
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local fields = {'v', 's'}
  for _ = 1, n do
    fields[#fields + 1] = 'm:' .. ARGV[a]
    a = a + 1
  end
  -- unpack fails past about 8,000 values: ask in slices of 500, whatever the batch
  local row = {}
  for j = 1, #fields, 500 do
    local got = redis.call('HMGET', key, unpack(fields, j, math.min(j + 499, #fields)))
    for g = 1, #got do row[j + g - 1] = got[g] end
  end
  out[i] = row
end
return out
