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
-- The reply and the effect record live ARGV[8] (SAGA_RETENTION_S). Records the domain
-- body keeps per saga should too: `retention`, at the end of this part, is its tool.
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

-- Records with a bounded life, for the domain body (`retention`). Redis 7.0 has no TTL
-- per hash field, so a hash of records (one per saga, say) keeps an index beside it: a
-- sorted set of its fields, each scored by when it was last written (Redis's TIME, ms).
-- A field is past its life once written longer ago than the ttl of records (ARGV[8])
-- and a grace of 1 s: the grace lets a domain record outlive its step's effect record
-- (set in the same call, PX ttl), so a compensation that still finds its effect record
-- finds the domain record too. Trim a few expired fields in every call: the work of a
-- call stays bounded, and keeps pace with the writes as long as each call trims more
-- than it writes: the domain body's top-level code runs in every call that reaches it
-- (all but repeats answered from the store), so trim there. `check`, `expired` and
-- `trim` read (and raise) before they write, so the domain body's rule holds: check
-- everything, then write.
--   retention.ttl_ms, retention.now_ms          the ttl of records, Redis's clock (ms)
--   retention.check(hash, index)                raises unless a hash and a sorted set
--                                               (or absent): call it before writing
--   retention.keep(hash, index, field, value)   HSET, indexed now (its life starts again)
--   retention.drop(hash, index, field)          HDEL, and its index entry
--   retention.expired(hash, index, limit)    -> {{field, value or false}, ...}: at most
--                                               `limit` fields past their life, oldest
--                                               first; checks, reads only
--   retention.forget(hash, index, entries)      HDEL and ZREM those entries
--   retention.trim(hash, index, limit)          expired, then forget; returns how many
--   retention.trim_stream(stream, limit)        a stream of XADD '*' entries: XTRIM MINID
--                                               ~ (whole nodes; Redis bounds the work),
--                                               then XDEL of at most `limit` expired
--                                               entries left in a partly expired node;
--                                               returns how many went
local retention = {ttl_ms = tonumber(ARGV[8])}
do
  local GRACE_MS = 1000
  local clock = redis.call('TIME')
  retention.now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  -- Written before this instant (ms) is past its life; <= 0: nothing is.
  local before = retention.now_ms - retention.ttl_ms - GRACE_MS
  local before_text = string.format('%.0f', before)

  local function expect(key, wanted)
    local kind = redis.call('TYPE', key).ok
    if kind ~= wanted and kind ~= 'none' then
      error(string.format('%s holds a %s, not a %s: nothing written', key, kind, wanted), 0)
    end
  end

  function retention.check(hash, index)
    expect(hash, 'hash')
    expect(index, 'zset')
  end

  function retention.keep(hash, index, field, value)
    redis.call('HSET', hash, field, value)
    redis.call('ZADD', index, retention.now_ms, field)
  end

  function retention.drop(hash, index, field)
    redis.call('HDEL', hash, field)
    redis.call('ZREM', index, field)
  end

  function retention.expired(hash, index, limit)
    retention.check(hash, index)
    if before <= 0 then
      return {}
    end
    local fields = redis.call('ZRANGE', index, '-inf', '(' .. before_text, 'BYSCORE',
      'LIMIT', 0, limit)
    if #fields == 0 then
      return {}
    end
    local values = redis.call('HMGET', hash, unpack(fields))
    local entries = {}
    for i, field in ipairs(fields) do
      entries[i] = {field, values[i]}
    end
    return entries
  end

  function retention.forget(hash, index, entries)
    if #entries == 0 then
      return 0
    end
    local fields = {}
    for i, entry in ipairs(entries) do
      fields[i] = entry[1]
    end
    redis.call('HDEL', hash, unpack(fields))
    redis.call('ZREM', index, unpack(fields))
    return #fields
  end

  function retention.trim(hash, index, limit)
    return retention.forget(hash, index, retention.expired(hash, index, limit))
  end

  function retention.trim_stream(stream, limit)
    expect(stream, 'stream')
    if before <= 0 then
      return 0
    end
    local gone = redis.call('XTRIM', stream, 'MINID', '~', before_text)
    local left = redis.call('XRANGE', stream, '-', '(' .. before_text .. '-0', 'COUNT', limit)
    if #left > 0 then
      local ids = {}
      for i, entry in ipairs(left) do
        ids[i] = entry[1]
      end
      gone = gone + redis.call('XDEL', stream, unpack(ids))
    end
    return gone
  end
end
