"""Constrained field types of the sample's messages (the envelope's are in saga_worker).

Money is always an integer count of minor units (cents): floats cannot hold
amounts exactly, so they are rejected rather than rounded.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict, StringConstraints

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]  # ISO 3166-1 alpha-2
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]  # ISO 4217

MAX_MINOR_UNITS = 10**12
MinorUnits = Annotated[int, Strict(), Field(ge=0, le=MAX_MINOR_UNITS)]

MAX_QUANTITY = 10_000
Quantity = Annotated[int, Strict(), Field(ge=1, le=MAX_QUANTITY)]
