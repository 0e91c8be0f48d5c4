-- Payment, part 2 of 3 (see prologue.lua), after the shared settling.lua (units_of,
-- MOST, expect_hash, settle_expired). KEYS[3] balances HASH customer -> minor units,
-- KEYS[4] charges HASH saga_id -> effect JSON {saga_id, customer_id, amount},
-- KEYS[5] their index ZSET saga_id -> when written (ms; prologue.lua's `retention`),
-- KEYS[6] settled HASH customer -> minor units of the charges that outlived the retention.
-- Amounts travel as decimal strings so HINCRBY gets them exactly. A script that
-- raises half-way is not rolled back, so the amount, the balance and every key are
-- checked before the first write, and the writes that follow cannot fail. A stored
-- balance that is not a whole number of minor units refuses a charge and faults a
-- refund (retried until someone repairs it), with nothing written either way.
-- Every call first settles up to TRIM_PER_CALL charges past their life (see
-- settle_expired at the end), checked whole and then written, before the command's turn.
local BALANCES, CHARGES, CHARGED_AT, SETTLED = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local TRIM_PER_CALL = 4  -- a call writes at most one charge

local function apply(args, effect_json)
  local customer, amount = args.customer_id, units_of(args.amount)
  if not amount then
    return false, 'invalid_amount', string.format(
      'amount %s is not a whole number of minor units from 0 to %s', shown(args.amount), MOST_TEXT)
  end
  if type(customer) ~= 'string' or type(args.saga_id) ~= 'string' then
    return false, 'invalid_charge', 'a charge needs a customer_id and a saga_id'
  end
  expect_hash(BALANCES)
  local text = redis.call('HGET', BALANCES, customer)
  if not text then
    return false, 'unknown_customer', 'unknown customer ' .. customer
  end
  local balance = units_of(text)
  if not balance then
    return false, 'invalid_balance', string.format(
      'balance of customer %s is %s, not a whole number of minor units from 0 to %s',
      customer, shown(text), MOST_TEXT)
  end
  if balance < amount then
    return false, 'insufficient_funds', string.format(
      'insufficient funds for customer %s: %s due, %s available', customer, args.amount, text)
  end
  if amount > 0 then
    redis.call('HINCRBY', BALANCES, customer, '-' .. args.amount)
  end
  retention.keep(CHARGES, CHARGED_AT, args.saga_id, effect_json)
  return true
end

local function undo(effect, _)
  local customer, amount = effect.customer_id, units_of(effect.amount)
  if not amount or type(customer) ~= 'string' or type(effect.saga_id) ~= 'string' then
    error('invalid_charge: the recorded charge is malformed: nothing refunded', 0)
  end
  expect_hash(BALANCES)
  local text = redis.call('HGET', BALANCES, customer)
  local balance = 0  -- a customer dropped since the charge comes back with the refund
  if text then
    balance = units_of(text)
  end
  if not balance or balance > MOST - amount then
    error(string.format(
      'invalid_balance: balance of customer %s is %s, which cannot take back %s minor units'
        .. ' and stay a whole number from 0 to %s: nothing refunded',
      customer, shown(text or ''), effect.amount, MOST_TEXT), 0)
  end
  if amount > 0 then
    redis.call('HINCRBY', BALANCES, customer, effect.amount)
  end
  retention.drop(CHARGES, CHARGED_AT, effect.saga_id)
end

-- Charges past their life are settled (settling.lua): their amounts move to SETTLED
-- per customer. Runs in every call before the epilogue calls apply or undo: its checks
-- of the record keys (their types) stand for theirs.
settle_expired(CHARGES, CHARGED_AT, SETTLED, TRIM_PER_CALL, function(charge)
  local customer, amount = charge.customer_id, units_of(charge.amount)
  if type(customer) ~= 'string' or not amount then
    return nil
  end
  return {customer}, {[customer] = amount}
end)
