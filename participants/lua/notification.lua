-- Notification, part 2 of 3 (see prologue.lua). KEYS[3] notices STREAM, KEYS[4] sent
-- HASH '<kind>:<order_id>' -> stream entry id. A notice goes out once per order and
-- kind, whichever saga or attempt asks for it.
-- A script that raises half-way is not rolled back: the fields and both keys are
-- checked before the first write, so a notice is never added without being marked
-- sent (which would send it again on the next attempt).
local NOTICES, SENT = KEYS[3], KEYS[4]

local function expect_type(key, wanted)
  local kind = redis.call('TYPE', key).ok
  if kind ~= wanted and kind ~= 'none' then
    error(string.format('%s holds a %s, not a %s: nothing written', key, kind, wanted), 0)
  end
end

local function apply(args, effect_json)  -- luacheck: ignore effect_json
  for _, name in ipairs({'kind', 'order_id', 'customer_id', 'saga_id'}) do
    if type(args[name]) ~= 'string' then
      return false, 'invalid_notice', 'a notice needs a ' .. name
    end
  end
  expect_type(NOTICES, 'stream')
  expect_type(SENT, 'hash')
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
