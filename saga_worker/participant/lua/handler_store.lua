-- Stores the outcome of one command of a handler participant, atomically; it never
-- overwrites a stored outcome. The same rules as handler_store.settle_step (Python).
-- KEYS[1] the command's reply key, KEYS[2] the step's record (participant/keys.py)
-- ARGV[1] 'action' | 'compensation'
-- ARGV[2] the outcome JSON: {t = 'completed', r = result JSON}
--         | {t = 'failed', c = code, e = error, rt = false} | {t = 'compensated'}
-- ARGV[3] the outcome JSON refusing an action whose step was compensated first
-- ARGV[4] ttl of both keys, ms
-- Returns {source, outcome JSON}: 'stored' (an outcome was there already: it is the
-- answer, nothing changes) or 'new' (stored now, the step record updated).
-- Step record: {s = 'applied' | 'compensated' | 'tombstone', r = result JSON}.
local stored = redis.call('GET', KEYS[1])
if stored then
  return {'stored', stored}
end
local ttl = tonumber(ARGV[4])
local outcome = ARGV[2]
local given = cjson.decode(outcome)
local raw = redis.call('GET', KEYS[2])
local record = nil
if raw then
  record = cjson.decode(raw)
end

if ARGV[1] == 'compensation' then
  if given.t == 'compensated' then
    if record == nil then
      -- Before (or instead of) its action: a tombstone refuses the late action.
      redis.call('SET', KEYS[2], cjson.encode({s = 'tombstone'}), 'PX', ttl)
    elseif record.s == 'applied' then
      record.s = 'compensated'
      redis.call('SET', KEYS[2], cjson.encode(record), 'PX', ttl)
    end
  end
elseif record ~= nil then
  -- The step record has the last word: an earlier attempt succeeded (its result
  -- stands) or a compensation came first (refused).
  if record.s == 'applied' then
    outcome = cjson.encode({t = 'completed', r = record.r})
  else
    outcome = ARGV[3]
  end
elseif given.t == 'completed' then
  redis.call('SET', KEYS[2], cjson.encode({s = 'applied', r = given.r}), 'PX', ttl)
end
redis.call('SET', KEYS[1], outcome, 'PX', ttl)
return {'new', outcome}
