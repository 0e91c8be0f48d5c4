-- Inventory, part 2 of 3 (see prologue.lua). KEYS[3] stock HASH sku -> units,
-- KEYS[4] reservations HASH saga_id -> effect JSON {saga_id, items = {{sku, qty}, ...}}.
-- All items or none: a script that raises half-way is not rolled back, so every
-- line, every stock figure and both keys are checked before the first write, and
-- the writes that follow cannot fail. A SKU on several lines counts once, summed.
-- Stock that is not a whole number of units refuses a reservation and faults a
-- release (retried until someone repairs it), with nothing written either way.
local STOCK, RESERVATIONS = KEYS[3], KEYS[4]
-- Units are exact both as Lua numbers and for HINCRBY up to 2^53.
local MOST, MOST_TEXT = 2 ^ 53, '9007199254740992'

-- Stored units as HINCRBY reads them and Lua compares them exactly: '0' or a decimal
-- integer without sign, spaces or leading zeros, at most 2^53. nil otherwise.
local function units_of(text)
  if type(text) ~= 'string' or (text ~= '0' and not string.find(text, '^[1-9]%d*$')) then
    return nil
  end
  if #text > #MOST_TEXT or (#text == #MOST_TEXT and text > MOST_TEXT) then
    return nil
  end
  return tonumber(text)
end

local function shown(text)
  return string.format('%q', string.sub(text, 1, 40))
end

local function expect_hash(key)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'hash' and kind ~= 'none' then
    error(string.format('%s holds a %s, not a hash: nothing written', key, kind), 0)
  end
end

-- The SKUs in order of first appearance and the summed quantity per SKU;
-- or nil and why, if a line is not {sku, whole number from 1 to 2^53}.
local function quantities(items)
  if type(items) ~= 'table' then
    return nil, 'no list of items'
  end
  local skus, wanted = {}, {}
  for i, line in ipairs(items) do
    local sku, qty
    if type(line) == 'table' then
      sku, qty = line[1], line[2]
    end
    if type(sku) ~= 'string' or type(qty) ~= 'number' or qty < 1 or qty ~= math.floor(qty) then
      return nil, string.format('line %d is not a SKU and a whole quantity of at least 1', i)
    end
    if wanted[sku] == nil then
      skus[#skus + 1] = sku
      wanted[sku] = 0
    end
    wanted[sku] = wanted[sku] + qty
    if wanted[sku] > MOST then
      return nil, string.format('quantity of SKU %s is above %s', sku, MOST_TEXT)
    end
  end
  return skus, wanted
end

local function apply(args, effect_json)
  local skus, wanted = quantities(args.items)
  if not skus then
    return false, 'invalid_quantity', wanted
  end
  if type(args.saga_id) ~= 'string' then
    return false, 'invalid_reservation', 'no saga_id to record the reservation under'
  end
  expect_hash(STOCK)
  expect_hash(RESERVATIONS)
  for _, sku in ipairs(skus) do
    local text = redis.call('HGET', STOCK, sku)
    if not text then
      return false, 'unknown_sku', 'unknown SKU ' .. sku
    end
    local on_hand = units_of(text)
    if not on_hand then
      return false, 'invalid_stock', string.format(
        'stock of SKU %s is %s, not a whole number of units from 0 to %s', sku, shown(text), MOST_TEXT)
    end
    if on_hand < wanted[sku] then
      return false, 'insufficient_stock', string.format(
        'insufficient stock for SKU %s: %d wanted, %d on hand', sku, wanted[sku], on_hand)
    end
  end
  for _, sku in ipairs(skus) do
    redis.call('HINCRBY', STOCK, sku, string.format('%d', -wanted[sku]))
  end
  redis.call('HSET', RESERVATIONS, args.saga_id, effect_json)
  return true
end

local function undo(effect, _)
  local skus, back = quantities(effect.items)
  if not skus or type(effect.saga_id) ~= 'string' then
    error('invalid_reservation: the recorded reservation is malformed: nothing released', 0)
  end
  expect_hash(STOCK)
  expect_hash(RESERVATIONS)
  for _, sku in ipairs(skus) do
    local text = redis.call('HGET', STOCK, sku)
    local on_hand = 0  -- a SKU dropped since the reservation comes back with what it gets
    if text then
      on_hand = units_of(text)
    end
    if not on_hand or on_hand > MOST - back[sku] then
      error(string.format(
        'invalid_stock: stock of SKU %s is %s, which cannot take back %d units and stay a whole'
          .. ' number from 0 to %s: nothing released', sku, shown(text or ''), back[sku], MOST_TEXT), 0)
    end
  end
  for _, sku in ipairs(skus) do
    redis.call('HINCRBY', STOCK, sku, string.format('%d', back[sku]))
  end
  redis.call('HDEL', RESERVATIONS, effect.saga_id)
end
