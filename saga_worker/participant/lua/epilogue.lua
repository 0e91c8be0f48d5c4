-- The participant protocol, part 3 of 3 (see prologue.lua). The domain body above
-- defined apply(args, effect_json) -> ok[, code, error] and undo(effect, effect_json).
-- Effect record: {s = 'applied' | 'compensated' | 'tombstone', r = result JSON,
--                 x = effect JSON}.
local ttl = tonumber(ARGV[8])

local function remember(outcome)
  local text = cjson.encode(outcome)
  redis.call('SET', KEYS[1], text, 'PX', ttl)
  return {'new', text}
end

local function record_effect(record)
  redis.call('SET', KEYS[2], cjson.encode(record), 'PX', ttl)
end

local raw = redis.call('GET', KEYS[2])
local record = nil
if raw then
  record = cjson.decode(raw)
end

if ARGV[1] == 'compensation' then
  if record == nil then
    -- Before (or instead of) its action: leave a tombstone so a late action is refused.
    record_effect({s = 'tombstone'})
  elseif record.s == 'applied' then
    undo(cjson.decode(record.x), record.x)
    record.s = 'compensated'
    record_effect(record)
  end
  return remember({t = 'compensated'})
end

if record ~= nil then
  if record.s == 'applied' then
    -- An earlier attempt of this step took effect: same result, no second effect.
    return remember({t = 'completed', r = record.r})
  end
  return remember({t = 'failed', c = 'already_compensated', rt = false,
                   e = 'refused: this step was compensated before the action arrived'})
end

if ARGV[2] == 'refuse' then
  return remember({t = 'failed', c = ARGV[6], e = ARGV[7], rt = false})
end

local ok, code, err = apply(cjson.decode(ARGV[3]), ARGV[5])
if not ok then
  return remember({t = 'failed', c = code, e = err, rt = false})
end
record_effect({s = 'applied', r = ARGV[4], x = ARGV[5]})
return remember({t = 'completed', r = ARGV[4]})
