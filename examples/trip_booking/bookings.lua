-- The bookings participant's domain body; saga_worker wraps it in its own protocol
-- (stored replies, effect records), so this only applies and undoes one booking.
-- KEYS[3] seats HASH flight -> seats left, KEYS[4] rooms HASH hotel -> rooms left,
-- KEYS[5] booked HASH '<saga_id>/<kind>' -> the booking (effect JSON).
-- Everything is checked before anything is written: a script that raises half-way
-- is not rolled back.
local LEFT = {flight = KEYS[3], hotel = KEYS[4]}
local BOOKED = KEYS[5]

local function apply(args, effect_json)
  local left = redis.call('HGET', LEFT[args.kind], args.item)
  if not left then
    return false, 'unknown_' .. args.kind, 'no ' .. args.kind .. ' ' .. args.item
  end
  if tonumber(left) < 1 then
    return false, 'sold_out', args.kind .. ' ' .. args.item .. ' is fully booked'
  end
  redis.call('HINCRBY', LEFT[args.kind], args.item, -1)
  redis.call('HSET', BOOKED, args.saga_id .. '/' .. args.kind, effect_json)
  return true
end

-- Gives back exactly what apply took; called once, with the recorded effect.
local function undo(effect, _)
  redis.call('HINCRBY', LEFT[effect.kind], effect.item, 1)
  redis.call('HDEL', BOOKED, effect.saga_id .. '/' .. effect.kind)
end
