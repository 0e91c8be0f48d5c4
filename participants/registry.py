"""The sample participants by name, built with their settings from the environment."""

from __future__ import annotations

from collections.abc import Mapping

from participants import keys
from participants.definition import Participant
from participants.errors import UnknownParticipantError
from participants.inventory import INVENTORY
from participants.notification import NOTIFICATION
from participants.payment import PAYMENT
from participants.shipping import countries_from_env, shipping_participant

NAMES: tuple[str, ...] = (keys.INVENTORY, keys.PAYMENT, keys.SHIPPING, keys.NOTIFICATION)


def build_participant(name: str, env: Mapping[str, str]) -> Participant:
    if name == keys.INVENTORY:
        return INVENTORY
    if name == keys.PAYMENT:
        return PAYMENT
    if name == keys.SHIPPING:
        return shipping_participant(countries_from_env(env))
    if name == keys.NOTIFICATION:
        return NOTIFICATION
    raise UnknownParticipantError(f"no participant {name!r}; choose one of {', '.join(NAMES)}")
