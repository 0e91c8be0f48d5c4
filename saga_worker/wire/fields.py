"""Constrained field types of the saga envelope: ids, attempts, error text.

Application messages use them too (`saga_worker.Identifier`, ...), so ids log,
key and hash-tag cleanly whoever minted them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, Strict, StringConstraints

# Saga ids end up inside Redis hash tags (`{saga_id}`), so braces, whitespace and
# anything else that could split a key or a slot are kept out.
SagaId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]

# Ids minted by other systems (orders, customers, SKUs, messages): any printable
# text without whitespace or control characters, so they log and key cleanly.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f\x7f-\x9f]+$")
]

# Human-readable single-line text such as a city or a payment method.
ShortText = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]

Attempt = Annotated[int, Strict(), Field(ge=1, le=10_000)]
SchemaVersion = Annotated[int, Strict(), Field(ge=1, le=1_000)]

MAX_ERROR_CHARS = 2_000


def _truncate_error(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_ERROR_CHARS:
        return value[: MAX_ERROR_CHARS - 1] + "\u2026"
    return value


# A failure reply must never be dead-lettered over its wording (the saga would
# stall until its timeout), so long error text is cut short instead of rejected.
ErrorText = Annotated[
    str, BeforeValidator(_truncate_error), StringConstraints(max_length=MAX_ERROR_CHARS)
]
