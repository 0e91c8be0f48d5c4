-- Notification, part 2 of 3 (see prologue.lua). KEYS[3] notices STREAM, KEYS[4] sent
-- HASH '<kind>:<order_id>' -> stream entry id. A notice goes out once per order and
-- kind, whichever saga or attempt asks for it.
local NOTICES, SENT = KEYS[3], KEYS[4]

local function apply(args, effect_json)  -- luacheck: ignore effect_json
  local sent_field = args.kind .. ':' .. args.order_id
  if redis.call('HEXISTS', SENT, sent_field) == 1 then
    return true
  end
  local id = redis.call('XADD', NOTICES, '*', 'kind', args.kind, 'order_id', args.order_id,
    'customer_id', args.customer_id, 'saga_id', args.saga_id)
  redis.call('HSET', SENT, sent_field, id)
  return true
end

local function undo(effect, effect_json)  -- luacheck: ignore
  -- Notices are never taken back.
end
