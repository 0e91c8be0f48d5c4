-- Inventory, part 2 of 3 (see prologue.lua). KEYS[3] stock HASH sku -> units,
-- KEYS[4] reservations HASH saga_id -> effect JSON {saga_id, items = {{sku, qty}, ...}}.
-- All items or none: every line is checked before any stock moves.
local STOCK, RESERVATIONS = KEYS[3], KEYS[4]

local function apply(args, effect_json)
  for _, line in ipairs(args.items) do
    local sku, wanted = line[1], line[2]
    local on_hand = redis.call('HGET', STOCK, sku)
    if not on_hand then
      return false, 'unknown_sku', 'unknown SKU ' .. sku
    end
    if tonumber(on_hand) < wanted then
      return false, 'insufficient_stock', string.format(
        'insufficient stock for SKU %s: %d wanted, %d on hand', sku, wanted, tonumber(on_hand))
    end
  end
  for _, line in ipairs(args.items) do
    redis.call('HINCRBY', STOCK, line[1], -line[2])
  end
  redis.call('HSET', RESERVATIONS, args.saga_id, effect_json)
  return true
end

local function undo(effect, _)
  for _, line in ipairs(effect.items) do
    redis.call('HINCRBY', STOCK, line[1], line[2])
  end
  redis.call('HDEL', RESERVATIONS, effect.saga_id)
end
