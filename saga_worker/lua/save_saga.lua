-- Writes one saga's decision atomically, if nobody wrote it since it was read.
-- KEYS[1] the saga hash
-- ARGV: expected_version, state_json, ttl_ms (0 keeps it), n_seen, seen ids...,
--       then pairs of outbox (message_id, record) to the end.
-- Returns the new version, or -1 when the compare-and-set is lost.
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return -1
end
local fields = {'v', current + 1, 's', ARGV[2]}
local n_seen = tonumber(ARGV[4])
local i = 5
for _ = 1, n_seen do
  fields[#fields + 1] = 'm:' .. ARGV[i]
  fields[#fields + 1] = '1'
  i = i + 1
end
while i < #ARGV do
  fields[#fields + 1] = 'o:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  i = i + 2
end
redis.call('HSET', KEYS[1], unpack(fields))
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return current + 1
