-- Shipping, part 2 of 3 (see prologue.lua). KEYS[3] shipments HASH saga_id -> shipment
-- JSON (active), KEYS[4] cancelled HASH saga_id -> shipment JSON, KEYS[5] and KEYS[6]
-- their indexes ZSET saga_id -> when written (ms; prologue.lua's `retention`),
-- KEYS[7] trimmed HASH 'shipments' | 'cancelled' -> how many records outlived the
-- retention and were dropped.
-- A script that raises half-way is not rolled back: every key is checked before the
-- first write, so a cancellation cannot drop the shipment and then fail to record it
-- cancelled. Every call first drops up to TRIM_PER_CALL records of each hash past
-- their life, checked and then written, before the command's turn.
local SHIPMENTS, CANCELLED = KEYS[3], KEYS[4]
local SHIPPED_AT, CANCELLED_AT, TRIMMED = KEYS[5], KEYS[6], KEYS[7]
local TRIM_PER_CALL = 4  -- a call writes at most one record

local function apply(args, effect_json)
  if type(args.saga_id) ~= 'string' then
    return false, 'invalid_shipment', 'no saga_id to record the shipment under'
  end
  retention.keep(SHIPMENTS, SHIPPED_AT, args.saga_id, effect_json)  -- the only writes
  return true
end

local function undo(effect, effect_json)
  if type(effect.saga_id) ~= 'string' then
    error('invalid_shipment: the recorded shipment has no saga_id: nothing cancelled', 0)
  end
  retention.drop(SHIPMENTS, SHIPPED_AT, effect.saga_id)
  retention.keep(CANCELLED, CANCELLED_AT, effect.saga_id, effect_json)
end

-- Shipments and cancellations past their life are dropped, and counted (so a check
-- of completed sagas against active shipments can tell a dropped record from a lost one).
local function trim_expired()
  local shipments = retention.expired(SHIPMENTS, SHIPPED_AT, TRIM_PER_CALL)
  local cancelled = retention.expired(CANCELLED, CANCELLED_AT, TRIM_PER_CALL)
  expect_hash(TRIMMED)
  local function count(name, dropped)
    if dropped > 0 then
      redis.call('HINCRBY', TRIMMED, name, dropped)
    end
  end
  count('shipments', retention.forget(SHIPMENTS, SHIPPED_AT, shipments))
  count('cancelled', retention.forget(CANCELLED, CANCELLED_AT, cancelled))
end

-- Runs in every call before the epilogue calls apply or undo: its checks of the record
-- keys (their types) stand for theirs.
trim_expired()
