-- Shipping, part 2 of 3 (see prologue.lua). KEYS[3] shipments HASH saga_id -> shipment
-- JSON (active), KEYS[4] cancelled HASH saga_id -> shipment JSON.
local SHIPMENTS, CANCELLED = KEYS[3], KEYS[4]

local function apply(args, effect_json)
  redis.call('HSET', SHIPMENTS, args.saga_id, effect_json)
  return true
end

local function undo(effect, effect_json)
  redis.call('HDEL', SHIPMENTS, effect.saga_id)
  redis.call('HSET', CANCELLED, effect.saga_id, effect_json)
end
