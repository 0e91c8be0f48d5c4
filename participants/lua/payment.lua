-- Payment, part 2 of 3 (see prologue.lua). KEYS[3] balances HASH customer -> minor
-- units, KEYS[4] charges HASH saga_id -> effect JSON {saga_id, customer_id, amount}.
-- Amounts travel as decimal strings so HINCRBY gets them exactly. A script that
-- raises half-way is not rolled back, so the amount, the balance and both keys are
-- checked before the first write, and the writes that follow cannot fail. A stored
-- balance that is not a whole number of minor units refuses a charge and faults a
-- refund (retried until someone repairs it), with nothing written either way.
local BALANCES, CHARGES = KEYS[3], KEYS[4]
-- Minor units are exact both as Lua numbers and for HINCRBY up to 2^53.
local MOST, MOST_TEXT = 2 ^ 53, '9007199254740992'

-- Minor units as HINCRBY reads them and Lua compares them exactly: '0' or a decimal
-- integer without sign, spaces or leading zeros, at most 2^53. nil otherwise.
local function units_of(text)
  if type(text) ~= 'string' or (text ~= '0' and not string.find(text, '^[1-9]%d*$')) then
    return nil
  end
  if #text > #MOST_TEXT or (#text == #MOST_TEXT and text > MOST_TEXT) then
    return nil
  end
  return tonumber(text)
end

local function shown(text)
  return string.format('%q', string.sub(tostring(text), 1, 40))
end

local function expect_hash(key)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'hash' and kind ~= 'none' then
    error(string.format('%s holds a %s, not a hash: nothing written', key, kind), 0)
  end
end

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
  expect_hash(CHARGES)
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
  redis.call('HSET', CHARGES, args.saga_id, effect_json)
  return true
end

local function undo(effect, _)
  local customer, amount = effect.customer_id, units_of(effect.amount)
  if not amount or type(customer) ~= 'string' or type(effect.saga_id) ~= 'string' then
    error('invalid_charge: the recorded charge is malformed: nothing refunded', 0)
  end
  expect_hash(BALANCES)
  expect_hash(CHARGES)
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
  redis.call('HDEL', CHARGES, effect.saga_id)
end
