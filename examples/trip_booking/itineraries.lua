-- The itineraries participant's domain body (saga_worker adds its protocol around it).
-- KEYS[3] bounced SET of e-mail addresses that bounce, KEYS[4] sent HASH
-- trip_id -> the itinerary sent (effect JSON).
local BOUNCED, SENT = KEYS[3], KEYS[4]

local function apply(args, effect_json)
  if redis.call('SISMEMBER', BOUNCED, args.email) == 1 then
    return false, 'address_bounced', 'mail to ' .. args.email .. ' bounces'
  end
  redis.call('HSET', SENT, args.trip_id, effect_json)
  return true
end

local function undo(_, _)
  -- An itinerary is never taken back (send_itinerary has no compensation).
end
