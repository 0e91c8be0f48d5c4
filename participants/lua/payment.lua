-- Payment, part 2 of 3 (see prologue.lua). KEYS[3] balances HASH customer -> minor
-- units, KEYS[4] charges HASH saga_id -> effect JSON {saga_id, customer_id, amount}.
-- Amounts travel as decimal strings so HINCRBY gets them exactly.
local BALANCES, CHARGES = KEYS[3], KEYS[4]

local function apply(args, effect_json)
  local customer, amount = args.customer_id, args.amount
  local balance = redis.call('HGET', BALANCES, customer)
  if not balance then
    return false, 'unknown_customer', 'unknown customer ' .. customer
  end
  if tonumber(balance) < tonumber(amount) then
    return false, 'insufficient_funds', string.format(
      'insufficient funds for customer %s: %s due, %s available', customer, amount, balance)
  end
  if amount ~= '0' then
    redis.call('HINCRBY', BALANCES, customer, '-' .. amount)
  end
  redis.call('HSET', CHARGES, args.saga_id, effect_json)
  return true
end

local function undo(effect, _)
  redis.call('HINCRBY', BALANCES, effect.customer_id, effect.amount)
  redis.call('HDEL', CHARGES, effect.saga_id)
end
