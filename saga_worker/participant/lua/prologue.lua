-- The participant protocol, part 1 of 3: composed as prologue .. domain body .. epilogue.
-- One call settles one command atomically: its effect and its stored outcome together.
-- KEYS[1] the command's reply key, KEYS[2] the step's effect record, KEYS[3..] the
--         participant's domain keys (all under one hash tag).
-- ARGV[1] 'action' | 'compensation'     ARGV[2] verdict: 'apply' | 'refuse' | 'fault'
-- ARGV[3] args JSON (for the domain body)  ARGV[4] result JSON (for the reply)
-- ARGV[5] effect JSON (recorded; what a compensation undoes)
-- ARGV[6] error code  ARGV[7] error text (refuse, fault)  ARGV[8] ttl of records, ms
-- Returns {source, outcome JSON}: 'stored' (a repeated command, its stored outcome),
-- 'new' (recorded now, with the effect if any) or 'transient' (an unexpected error:
-- nothing recorded, nothing changed). Outcome JSON: {t = 'completed', r = result JSON}
-- | {t = 'failed', c = code, e = error, rt = retryable} | {t = 'compensated'}.
local stored = redis.call('GET', KEYS[1])
if stored then
  return {'stored', stored}
end
if ARGV[2] == 'fault' then
  return {'transient', cjson.encode({t = 'failed', c = ARGV[6], e = ARGV[7], rt = true})}
end
if not (string.find(ARGV[8], '^[1-9]%d*$') and #ARGV[8] <= 15) then
  -- The epilogue's SET ... PX would refuse it only after the domain body wrote, and
  -- every retry would write again: refuse before anything is written.
  return {'transient', cjson.encode({t = 'failed', c = 'invalid_ttl', rt = true,
    e = 'ttl of the records must be whole milliseconds from 1 to 10^15-1, got ' .. ARGV[8]})}
end
