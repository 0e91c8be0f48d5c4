-- The itineraries participant's domain body (saga_worker adds its protocol around it).
-- KEYS[3] bounced SET of e-mail addresses that bounce, KEYS[4] sent HASH
-- trip_id -> the itinerary sent (effect JSON), KEYS[5] its index ZSET
-- trip_id -> when written (ms; the prologue's `retention`).
local BOUNCED, SENT, SENT_AT = KEYS[3], KEYS[4], KEYS[5]
local TRIM_PER_CALL = 4  -- a call writes at most one itinerary

-- An itinerary sent is kept SAGA_RETENTION_S, then goes, a few per call; `trim`
-- checks both keys before it writes, so the write below cannot meet a wrong type.
retention.trim(SENT, SENT_AT, TRIM_PER_CALL)

local function apply(args, effect_json)
  if redis.call('SISMEMBER', BOUNCED, args.email) == 1 then
    return false, 'address_bounced', 'mail to ' .. args.email .. ' bounces'
  end
  retention.keep(SENT, SENT_AT, args.trip_id, effect_json)
  return true
end

local function undo(_, _)
  -- An itinerary is never taken back (send_itinerary has no compensation).
end
