-- Notification, part 2 of 3 (see prologue.lua). KEYS[3] notices STREAM, KEYS[4] sent
-- HASH '<kind>:<order_id>' -> stream entry id, KEYS[5] its index ZSET '<kind>:<order_id>'
-- -> when written (ms; prologue.lua's `retention`), KEYS[6] trimmed HASH 'notices' |
-- 'sent' -> how many outlived the retention and were dropped. A notice goes out once
-- per order and kind, whichever saga or attempt asks for it, within the retention.
-- A script that raises half-way is not rolled back: the fields and every key are
-- checked before the first write, so a notice is never added without being marked
-- sent (which would send it again on the next attempt). Every call first drops notices
-- and sent marks past their life (up to TRIM_PER_CALL marks, and the stream's whole
-- expired nodes plus up to TRIM_PER_CALL entries), before the command's turn.
local NOTICES, SENT, SENT_AT, TRIMMED = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local TRIM_PER_CALL = 4  -- a call adds at most one notice and one mark

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
  local sent_field = args.kind .. ':' .. args.order_id
  if redis.call('HEXISTS', SENT, sent_field) == 1 then
    return true
  end
  local id = redis.call('XADD', NOTICES, '*', 'kind', args.kind, 'order_id', args.order_id,
    'customer_id', args.customer_id, 'saga_id', args.saga_id)
  retention.keep(SENT, SENT_AT, sent_field, id)
  return true
end

local function undo(effect, effect_json)  -- luacheck: ignore
  -- Notices are never taken back.
end

-- Notices and sent marks past their life are dropped, and counted (so a check of
-- completed sagas against confirmations can tell a dropped notice from a lost one).
local function trim_expired()
  expect_type(NOTICES, 'stream')
  local sent = retention.expired(SENT, SENT_AT, TRIM_PER_CALL)
  expect_type(TRIMMED, 'hash')
  local function count(name, dropped)
    if dropped > 0 then
      redis.call('HINCRBY', TRIMMED, name, dropped)
    end
  end
  count('notices', retention.trim_stream(NOTICES, TRIM_PER_CALL))
  count('sent', retention.forget(SENT, SENT_AT, sent))
end

-- Runs in every call before the epilogue calls apply or undo: its checks of the record
-- keys (their types) stand for theirs.
trim_expired()
