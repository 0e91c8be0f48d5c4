"""The order-fulfillment sample: its saga, its app, its four participants, seed and demo.

Built on saga_worker's public API alone (a test checks the imports). A
participant is a table of command topics, each with a pure `prepare` function
that validates the command and says what the effect would be, and a Lua body that
applies (and undoes) that effect in Redis. The library's participant runtime
does the rest: decoding, dead letters, one atomic script per command that records
the reply together with the effect, one pipelined round trip per batch, replies,
and fault injection.

    app            participants/app.py           the App: OrderFulfillment + participants
    saga           participants/order_fulfillment.py

    inventory      participants/inventory.py     + lua/settling.lua, lua/inventory.lua
    payment        participants/payment.py       + lua/settling.lua, lua/payment.lua
    shipping       participants/shipping.py      + lua/shipping.lua
    notification   participants/notification.py  + lua/notification.lua
"""

from pathlib import Path

LUA = Path(__file__).parent / "lua"  # the participants' domain scripts


def lua_parts(*names: str) -> str:
    """A domain body made of parts of lua/, in order: shared ones, then the participant's."""
    return "\n".join((LUA / name).read_text() for name in names)
