-- Shipping, part 2 of 3 (see prologue.lua). KEYS[3] shipments HASH saga_id -> shipment
-- JSON (active), KEYS[4] cancelled HASH saga_id -> shipment JSON.
-- A script that raises half-way is not rolled back: both keys are checked before a
-- cancellation's first write, so it cannot drop the shipment and then fail to
-- record it cancelled.
local SHIPMENTS, CANCELLED = KEYS[3], KEYS[4]

local function expect_hash(key)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'hash' and kind ~= 'none' then
    error(string.format('%s holds a %s, not a hash: nothing written', key, kind), 0)
  end
end

local function apply(args, effect_json)
  if type(args.saga_id) ~= 'string' then
    return false, 'invalid_shipment', 'no saga_id to record the shipment under'
  end
  redis.call('HSET', SHIPMENTS, args.saga_id, effect_json)  -- the only write
  return true
end

local function undo(effect, effect_json)
  if type(effect.saga_id) ~= 'string' then
    error('invalid_shipment: the recorded shipment has no saga_id: nothing cancelled', 0)
  end
  expect_hash(SHIPMENTS)
  expect_hash(CANCELLED)
  redis.call('HDEL', SHIPMENTS, effect.saga_id)
  redis.call('HSET', CANCELLED, effect.saga_id, effect_json)
end
