-- Payment, part 2 of 3 (see prologue.lua). KEYS[3] balances HASH customer -> minor
-- units, KEYS[4] charges HASH saga_id -> effect JSON {saga_id, customer_id, amount},
-- KEYS[5] their index ZSET saga_id -> when written (ms; prologue.lua's `retention`),
-- KEYS[6] settled HASH customer -> minor units of the charges that outlived the retention.
-- Amounts travel as decimal strings so HINCRBY gets them exactly. A script that
-- raises half-way is not rolled back, so the amount, the balance and every key are
-- checked before the first write, and the writes that follow cannot fail. A stored
-- balance that is not a whole number of minor units refuses a charge and faults a
-- refund (retried until someone repairs it), with nothing written either way.
-- Every call first settles up to TRIM_PER_CALL charges past their life (see
-- settle_expired below), checked whole and then written, before the command's turn.
local BALANCES, CHARGES, CHARGED_AT, SETTLED = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local TRIM_PER_CALL = 4  -- a call writes at most one charge
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

-- Charges past their life are settled for good: their amounts move to SETTLED, so
-- balance + amounts charged + amounts settled stays what was seeded. Their step's
-- effect record has expired, so nothing can refund them any more. A record that
-- cannot be read, or whose amount SETTLED cannot take (a figure that is not whole
-- minor units), is not dropped: it is kept, and looked at again a retention later.
local function settle_expired()
  local expired = retention.expired(CHARGES, CHARGED_AT, TRIM_PER_CALL)
  expect_hash(SETTLED)
  local settled, changed, order, gone, kept = {}, {}, {}, {}, {}
  local function settled_of(customer)  -- false: not whole minor units
    if settled[customer] == nil then
      settled[customer] = units_of(redis.call('HGET', SETTLED, customer) or '0') or false
    end
    return settled[customer]
  end
  for _, entry in ipairs(expired) do
    local fits, customer, amount = true, nil, nil
    if entry[2] then  -- false: an index entry whose field is gone already
      local decoded, effect = pcall(cjson.decode, entry[2])
      if decoded and type(effect) == 'table' and type(effect.customer_id) == 'string' then
        customer, amount = effect.customer_id, units_of(effect.amount)
      end
      local so_far = customer and amount and settled_of(customer)
      fits = so_far and so_far <= MOST - amount
    end
    if fits then
      gone[#gone + 1] = entry
      if customer then
        if not changed[customer] then
          changed[customer] = true
          order[#order + 1] = customer
        end
        settled[customer] = settled[customer] + amount
      end
    else
      kept[#kept + 1] = entry
    end
  end
  for _, customer in ipairs(order) do
    redis.call('HSET', SETTLED, customer, string.format('%d', settled[customer]))
  end
  retention.forget(CHARGES, CHARGED_AT, gone)
  for _, entry in ipairs(kept) do
    retention.keep(CHARGES, CHARGED_AT, entry[1], entry[2])
  end
end

-- Runs in every call before the epilogue calls apply or undo: its checks of the record
-- keys (their types) stand for theirs.
settle_expired()
