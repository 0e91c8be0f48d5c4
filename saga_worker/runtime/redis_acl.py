"""What a Redis ACL user of saga-worker needs, and a check at start that it has it.

Workers and the CLI send these commands, from Python or from their Lua scripts
(EVALSHA runs a script's commands under the same user, each one checked), on keys
under SAGA_KEY_PREFIX only. The README's Security section lists them; devstack's
secured Redis creates its user with exactly these.
"""

from __future__ import annotations

from redis.exceptions import NoPermissionError, ResponseError

from saga_worker.runtime.redis_client import RedisClient

# Commands on no key, or only checked as commands.
# INFO counts a primary's replicas and WAIT waits for them (the store's replica wait);
# the cluster client reads the slot map with CLUSTER SLOTS and CLUSTER SHARDS.
CONNECTION_COMMANDS = (
    "ping", "hello", "select", "evalsha", "eval", "script|load", "time", "multi", "exec", "discard",
    "script|exists", "info", "wait", "cluster|slots", "cluster|shards",
)  # fmt: skip
# Commands on keys: each is tried on a probe key under the prefix at start.
KEY_COMMANDS = (
    "get", "set", "mget", "hget", "hset", "hmget", "hgetall", "hkeys", "hdel", "hexists",
    "hincrby", "hlen", "sadd", "srem", "sismember", "smembers", "zadd", "zrem", "zrange",
    "zrangebyscore", "zrevrangebyscore", "zremrangebyscore", "zcard", "zcount", "zscore",
    "xadd", "xrange", "xtrim", "xdel", "xlen", "type", "exists", "pexpire", "expire",
    "unlink", "del",
)  # fmt: skip
OTHER_COMMANDS = ("scan",)  # SCAN MATCH <prefix>*: finds a run's keys (list, cleanup)
REDIS_ACL_COMMANDS = (*CONNECTION_COMMANDS, *KEY_COMMANDS, *OTHER_COMMANDS)


def acl_rule(user: str, password: str, key_prefix: str) -> str:
    """The `ACL SETUSER` rule (and aclfile line) of a user with only what saga-worker needs."""
    commands = " ".join(f"+{c}" for c in REDIS_ACL_COMMANDS)
    return f"{user} on >{password} ~{key_prefix}* resetchannels -@all {commands}"


# Each command once, with arguments that change nothing lasting, on keys under the prefix;
# the names of those refused with NOPERM come back (a wrong type or syntax is no matter).
PROBE = """
local denied = {}
local k = KEYS[1]
local function try(name, ...)
  local reply = redis.pcall(name, ...)
  -- Redis 7.0 words it "ERR The user executing the script can't run this command ...",
  -- later versions "NOPERM ...".
  local err = type(reply) == 'table' and reply.err
  if err and (string.find(err, 'NOPERM', 1, true) or string.find(err, "can't run", 1, true)
      or string.find(err, "can't access", 1, true)) then
    table.insert(denied, name)
  end
end
try('TIME')
try('SET', k .. ':s', '1', 'PX', 60000) try('GET', k .. ':s') try('MGET', k .. ':s')
try('TYPE', k .. ':s') try('EXISTS', k .. ':s') try('PEXPIRE', k .. ':s', 60000)
try('EXPIRE', k .. ':s', 60)
try('HSET', k .. ':h', 'f', '1') try('HGET', k .. ':h', 'f') try('HMGET', k .. ':h', 'f')
try('HGETALL', k .. ':h') try('HKEYS', k .. ':h') try('HEXISTS', k .. ':h', 'f')
try('HINCRBY', k .. ':h', 'f', 1) try('HLEN', k .. ':h') try('HDEL', k .. ':h', 'f')
try('SADD', k .. ':e', 'm') try('SISMEMBER', k .. ':e', 'm') try('SMEMBERS', k .. ':e')
try('SREM', k .. ':e', 'm')
try('ZADD', k .. ':z', 1, 'm') try('ZRANGE', k .. ':z', 0, 0) try('ZRANGEBYSCORE', k .. ':z', 0, 1)
try('ZREVRANGEBYSCORE', k .. ':z', 1, 0) try('ZCARD', k .. ':z') try('ZCOUNT', k .. ':z', 0, 1)
try('ZSCORE', k .. ':z', 'm') try('ZREMRANGEBYSCORE', k .. ':z', 2, 3) try('ZREM', k .. ':z', 'm')
try('XADD', k .. ':x', '*', 'f', '1') try('XRANGE', k .. ':x', '-', '+', 'COUNT', 1)
try('XLEN', k .. ':x') try('XTRIM', k .. ':x', 'MAXLEN', 0) try('XDEL', k .. ':x', '0-1')
try('DEL', k .. ':s') try('UNLINK', k .. ':h', k .. ':e', k .. ':z', k .. ':x')
return denied
"""


async def missing_permissions(redis: RedisClient, key_prefix: str) -> list[str]:
    """The commands (or `keys <prefix>*`) the connected user may not use; empty if none.

    A NOPERM on the script itself (EVALSHA, SCRIPT LOAD or the probe key) names that."""
    try:
        script = redis.register_script(PROBE)
        # One hash tag for every probe key: on a cluster a script touches one slot only.
        denied = await script(keys=[f"{key_prefix}{{acl-probe}}"])
        await redis.script_exists(script.sha)  # pipelines of scripts ask this first
    except NoPermissionError as exc:
        return [str(exc).strip()[:200]]
    except ResponseError as exc:
        if "NOPERM" in str(exc):
            return [str(exc).strip()[:200]]
        raise
    return [d.decode() if isinstance(d, bytes) else str(d) for d in denied]
