-- The sample's shared start of a domain body that keeps figures of whole units: part 2
-- of the protocol's three (see prologue.lua) is this, then inventory.lua, payment.lua or shipping.lua
-- (participants.lua_parts).
-- Like the prologue's `retention`, what it defines reads (and raises) before it writes.
--   MOST, MOST_TEXT    2^53 and its decimal text: units are exact up to it both as Lua
--                      numbers and for HINCRBY
--   units_of(text)     stored units as HINCRBY reads them and Lua compares them exactly:
--                      '0' or a decimal integer without sign, spaces or leading zeros,
--                      at most 2^53; nil otherwise
--   shown(value)       value quoted and cut short, for an error message
--   expect_hash(key)   raises unless a hash (or absent): call it before writing
--   settle_expired(records, index, settled, limit, units_in)
--     Records past their life (retention.expired: at most `limit`, oldest first) leave
--     the books: their units are added to the `settled` HASH key -> units, so what is
--     on hand + what records hold + what is settled stays what was seeded; their step's
--     effect record has expired, so nothing can undo them any more. units_in(record),
--     given a record's decoded JSON (a table), returns its keys (a list, in order) and
--     their units (key -> units), or nil when it cannot be read. A record that cannot
--     be read, or whose units `settled` cannot take (a figure that is not whole units,
--     or would pass MOST), is not dropped: it is indexed again, and looked at a
--     retention later. Every record and figure is checked before the first write.
local MOST, MOST_TEXT = 2 ^ 53, '9007199254740992'

local function units_of(text)
  if type(text) ~= 'string' or (text ~= '0' and not string.find(text, '^[1-9]%d*$')) then
    return nil
  end
  if #text > #MOST_TEXT or (#text == #MOST_TEXT and text > MOST_TEXT) then
    return nil
  end
  return tonumber(text)
end

local function shown(value)
  return string.format('%q', string.sub(tostring(value), 1, 40))
end

local function expect_hash(key)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'hash' and kind ~= 'none' then
    error(string.format('%s holds a %s, not a hash: nothing written', key, kind), 0)
  end
end

local function settle_expired(records, index, settled_key, limit, units_in)
  local expired = retention.expired(records, index, limit)
  expect_hash(settled_key)
  local settled, changed, order, gone, kept = {}, {}, {}, {}, {}
  local function settled_of(key)  -- false: not whole units
    if settled[key] == nil then
      settled[key] = units_of(redis.call('HGET', settled_key, key) or '0') or false
    end
    return settled[key]
  end
  for _, entry in ipairs(expired) do
    local names, units = {}, {}
    if entry[2] then  -- false: an index entry whose field is gone already
      local decoded, record = pcall(cjson.decode, entry[2])
      names = nil
      if decoded and type(record) == 'table' then
        names, units = units_in(record)
      end
    end
    local fits = names ~= nil
    for _, key in ipairs(names or {}) do
      local so_far = settled_of(key)
      fits = fits and so_far and so_far <= MOST - units[key]
    end
    if fits then
      gone[#gone + 1] = entry
      for _, key in ipairs(names) do
        if not changed[key] then
          changed[key] = true
          order[#order + 1] = key
        end
        settled[key] = settled[key] + units[key]
      end
    else
      kept[#kept + 1] = entry
    end
  end
  for _, key in ipairs(order) do
    redis.call('HSET', settled_key, key, string.format('%d', settled[key]))
  end
  retention.forget(records, index, gone)
  for _, entry in ipairs(kept) do
    retention.keep(records, index, entry[1], entry[2])
  end
end
