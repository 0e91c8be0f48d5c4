-- The bookings participant's domain body; saga_worker wraps it in its own protocol
-- (stored replies, effect records), so this only applies and undoes one booking.
-- KEYS[3] seats HASH flight -> seats left, KEYS[4] rooms HASH hotel -> rooms left,
-- KEYS[5] booked HASH '<saga_id>/<kind>' -> the booking (effect JSON), KEYS[6] its
-- index ZSET '<saga_id>/<kind>' -> when written (ms; the prologue's `retention`).
-- Everything is checked before anything is written: a script that raises half-way
-- is not rolled back.
local LEFT = {flight = KEYS[3], hotel = KEYS[4]}
local BOOKED, BOOKED_AT = KEYS[5], KEYS[6]
local TRIM_PER_CALL = 4  -- a call writes at most one booking

-- A booking lives SAGA_RETENTION_S: once its step's effect record has expired, no
-- cancel can give it back, so it goes, a few per call, in every call that gets here.
-- `trim` checks both keys before it writes (so the writes below cannot meet a key of
-- the wrong type), and is whole on its own: what it drops is past its life whatever
-- the command does next.
retention.trim(BOOKED, BOOKED_AT, TRIM_PER_CALL)

local function apply(args, effect_json)
  local left = redis.call('HGET', LEFT[args.kind], args.item)
  if not left then
    return false, 'unknown_' .. args.kind, 'no ' .. args.kind .. ' ' .. args.item
  end
  if tonumber(left) < 1 then
    return false, 'sold_out', args.kind .. ' ' .. args.item .. ' is fully booked'
  end
  redis.call('HINCRBY', LEFT[args.kind], args.item, -1)
  retention.keep(BOOKED, BOOKED_AT, args.saga_id .. '/' .. args.kind, effect_json)
  return true
end

-- Gives back exactly what apply took; called once, with the recorded effect.
local function undo(effect, _)
  redis.call('HINCRBY', LEFT[effect.kind], effect.item, 1)
  retention.drop(BOOKED, BOOKED_AT, effect.saga_id .. '/' .. effect.kind)
end
