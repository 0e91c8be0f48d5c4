"""Shipping: a shipment with a tracking number for supported destinations; cancel it.

Rules (business failures, answered failed and not retryable):
- the destination country is not in the supported set (`SAGA_SHIPPING_COUNTRIES`,
  comma-separated ISO codes; default `DEFAULT_COUNTRIES`): `unsupported_destination`;
- the address is malformed: a postal code that does not fit its country's format
  (for the countries in `POSTAL_CODE_FORMATS`): `malformed_address`. Addresses with
  only a country are accepted, as the wire contract allows them.
The tracking number is derived from the saga id, so every attempt names the same one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from participants import keys, lua_parts
from saga_worker import (
    Apply,
    InvalidKnobError,
    JsonObject,
    Kind,
    Participant,
    Refuse,
    Route,
    Verdict,
)
from schemas import CancelShipment, CreateShipment
from schemas import topics as t

COUNTRIES_ENV = "SAGA_SHIPPING_COUNTRIES"
CARRIER = "demo-post"
DEFAULT_COUNTRIES = frozenset(
    {"AT", "BE", "CA", "CH", "DE", "DK", "ES", "FI", "FR", "GB"}
    | {"IE", "IT", "LU", "NL", "NO", "PL", "PT", "SE", "US"}
)
POSTAL_CODE_FORMATS: dict[str, re.Pattern[str]] = {
    "US": re.compile(r"\d{5}(-\d{4})?"),
    "DE": re.compile(r"\d{5}"),
    "FR": re.compile(r"\d{5}"),
    "ES": re.compile(r"\d{5}"),
    "IT": re.compile(r"\d{5}"),
    "NL": re.compile(r"\d{4} ?[A-Z]{2}"),
    "CA": re.compile(r"[A-Z]\d[A-Z] ?\d[A-Z]\d"),
    "GB": re.compile(r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}"),
    "AT": re.compile(r"\d{4}"),
    "BE": re.compile(r"\d{4}"),
    "CH": re.compile(r"\d{4}"),
}


def countries_from_env(env: Mapping[str, str]) -> frozenset[str]:
    raw = env.get(COUNTRIES_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_COUNTRIES
    codes = frozenset(c.strip().upper() for c in raw.split(",") if c.strip())
    bad = sorted(c for c in codes if not re.fullmatch(r"[A-Z]{2}", c))
    if bad:
        raise InvalidKnobError(f"{COUNTRIES_ENV}: not ISO 3166-1 alpha-2 codes: {bad}")
    return codes


def tracking_number(saga_id: str) -> str:
    return "TRK" + hashlib.sha256(saga_id.encode()).hexdigest()[:16].upper()


def address_problem(command: CreateShipment, countries: frozenset[str]) -> Refuse | None:
    address = command.shipping_address
    if address.country not in countries:
        return Refuse("unsupported_destination", f"cannot ship to country {address.country}")
    postal_format = POSTAL_CODE_FORMATS.get(address.country)
    postal_code = address.postal_code
    if (
        postal_code is not None
        and postal_format is not None
        and not postal_format.fullmatch(postal_code.strip().upper())
    ):
        return Refuse(
            "malformed_address", f"postal code {postal_code!r} is not valid in {address.country}"
        )
    return None


def shipping_participant(countries: frozenset[str] = DEFAULT_COUNTRIES) -> Participant:
    def prepare_shipment(command: CreateShipment) -> Verdict:
        problem = address_problem(command, countries)
        if problem is not None:
            return problem
        number = tracking_number(command.saga_id)
        shipment: JsonObject = {
            "saga_id": command.saga_id,
            "order_id": command.order_id,
            "tracking_number": number,
            "carrier": CARRIER,
            "country": command.shipping_address.country,
        }
        result: JsonObject = {"tracking_number": number, "carrier": CARRIER}
        return Apply(args={"saga_id": command.saga_id}, result=result, effect=shipment)

    return Participant(
        name=keys.SHIPPING,
        routes={
            t.CREATE_SHIPMENT: Route(CreateShipment, Kind.ACTION, prepare_shipment),
            t.CANCEL_SHIPMENT: Route(CancelShipment, Kind.COMPENSATION),
        },
        script=lua_parts("settling.lua", "shipping.lua"),
        domain_keys=_domain_keys,
    )


def _domain_keys(prefix: str) -> tuple[str, ...]:
    k = keys.shipping(prefix)
    return (k.shipments, k.cancelled, k.shipments_written, k.cancelled_written, k.trimmed)
