"""Commands packed by hiredis, in C, instead of by redis-py's Python packer.

redis-py's asyncio connections build the wire form of every argument in Python. A
batch's pipelined script calls carry thousands of arguments, and packing them was a
sixth of the orchestrator's CPU (issue 14's profile). hiredis, which already parses
the replies, packs the same bytes in C. A command hiredis does not take (an argument
other than str, bytes, int or float, such as a bool or a memoryview) goes to
redis-py's packer, so it gets the same bytes or the same error as before. hiredis
knows one encoding, UTF-8 with strict errors: a connection configured otherwise
keeps redis-py's packer.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)


class _HiredisPacking(AbstractConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        encoder = self.encoder
        utf8 = encoder.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        self._by_hiredis = utf8 and encoder.encoding_errors == "strict"

    def pack_command(self, *args: Any) -> list[bytes]:
        if not self._by_hiredis:
            return super().pack_command(*args)
        first = args[0]
        # As redis-py sends it: 'CLUSTER SLOTS' is two arguments.
        if isinstance(first, str) or (isinstance(first, bytes) and b" " in first):
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


class HiredisConnection(_HiredisPacking, Connection):
    pass


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    pass


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_BY_HIREDIS: dict[type[Any], type[Any]] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def packing_by_hiredis(connection_class: type[Any]) -> type[Any]:
    """The class that packs like `connection_class` with hiredis (a class of someone
    else's is left as it is)."""
    return _BY_HIREDIS.get(connection_class, connection_class)
