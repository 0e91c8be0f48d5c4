"""The sample participants and the one runtime they share.

A participant is a table of command topics, each with a pure `prepare` function
that validates the command and says what the effect would be, and a Lua body that
applies (and undoes) that effect in Redis. The runtime (`participants.runtime`)
does the rest: decoding, dead letters, one atomic script per command that records
the reply together with the effect (`lua/protocol.lua`), one pipelined round
trip per batch, replies, and fault injection (`participants.knobs`).

    inventory      participants/inventory.py     + lua/inventory.lua
    payment        participants/payment.py       + lua/payment.lua
    shipping       participants/shipping.py      + lua/shipping.lua
    notification   participants/notification.py  + lua/notification.lua
"""
