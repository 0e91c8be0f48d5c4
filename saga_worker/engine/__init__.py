"""The pure engine: the saga DSL, saga state, events, `decide` and retry arithmetic.

No I/O: nothing here imports Kafka, Redis or asyncio, reads a clock or draws a
random number (tests/unit/test_public_api.py checks the imports). Time and ids
come in as arguments; the runtime does the rest.
"""
