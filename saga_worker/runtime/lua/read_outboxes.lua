-- The sweeper's read of the sagas of one hash slot: per saga its version and its outbox
-- entries (the `o:` fields only, not the state).
-- KEYS: saga hashes. Returns per saga {version or false when gone, {field, value, ...}}.
local out = {}
for k = 1, #KEYS do
  local version = redis.call('HGET', KEYS[k], 'v')
  local entries = {}
  if version then
    local row = redis.call('HGETALL', KEYS[k])
    for i = 1, #row, 2 do
      if string.sub(row[i], 1, 2) == 'o:' then
        entries[#entries + 1] = row[i]
        entries[#entries + 1] = row[i + 1]
      end
    end
  end
  out[k] = {version, entries}
end
return out
