-- Inventory, part 2 of 3 (see prologue.lua), after the shared settling.lua (units_of,
-- MOST, expect_hash, settle_expired). KEYS[3] stock HASH sku -> units,
-- KEYS[4] reservations HASH saga_id -> effect JSON {saga_id, items = {{sku, qty}, ...}},
-- KEYS[5] their index ZSET saga_id -> when written (ms; prologue.lua's `retention`),
-- KEYS[6] settled HASH sku -> units of the reservations that outlived the retention.
-- All items or none: a script that raises half-way is not rolled back, so every
-- line, every stock figure and every key are checked before the first write, and
-- the writes that follow cannot fail. A SKU on several lines counts once, summed.
-- Stock that is not a whole number of units refuses a reservation and faults a
-- release (retried until someone repairs it), with nothing written either way.
-- Every call first settles up to TRIM_PER_CALL reservations past their life (see
-- settle_expired at the end), checked whole and then written, before the command's turn.
local STOCK, RESERVATIONS, RESERVED_AT, SETTLED = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local TRIM_PER_CALL = 4  -- a call writes at most one reservation

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
  retention.keep(RESERVATIONS, RESERVED_AT, args.saga_id, effect_json)
  return true
end

local function undo(effect, _)
  local skus, back = quantities(effect.items)
  if not skus or type(effect.saga_id) ~= 'string' then
    error('invalid_reservation: the recorded reservation is malformed: nothing released', 0)
  end
  expect_hash(STOCK)
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
  retention.drop(RESERVATIONS, RESERVED_AT, effect.saga_id)
end

-- Reservations past their life are settled (settling.lua): their units move to SETTLED
-- per SKU. Runs in every call before the epilogue calls apply or undo: its checks of
-- the record keys (their types) stand for theirs.
settle_expired(RESERVATIONS, RESERVED_AT, SETTLED, TRIM_PER_CALL, function(reservation)
  return quantities(reservation.items)
end)
