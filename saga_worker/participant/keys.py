"""Every Redis key the participant runtime writes, named in one place.

All keys of one participant share the hash tag `{<participant>}`, so each
command's script touches one cluster slot, and sit under the configurable key
prefix (`SAGA_KEY_PREFIX`), so tests and deployments can share a Redis:

    <prefix>{<p>}:reply:<idempotency key>     the stored outcome of one command (TTL)
    <prefix>{<p>}:effect:<saga_id>/<step>     what the step did: applied, compensated
                                              or a tombstone (TTL)
    <prefix>{<p>}:<name>                      the participant's own domain state
                                              (`ParticipantKeys.domain`)

Handler participants (participant.handler_store) use the same two records, with
the same TTL (`settings.retention`): `reply` holds the reply's outcome, `effect`
whether the step's handler succeeded (applied, with its result), was compensated,
or was compensated before any action (tombstone). They have no domain keys.

Saga ids cannot contain `/` (saga_worker.SagaId), so `<saga_id>/<step>` is
unambiguous whatever the step name holds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParticipantKeys:
    prefix: str
    participant: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}{{{self.participant}}}"

    def reply(self, idempotency_key: str) -> str:
        return f"{self.tag}:reply:{idempotency_key}"

    def effect(self, saga_id: str, step_name: str) -> str:
        return f"{self.tag}:effect:{saga_id}/{step_name}"

    def domain(self, name: str) -> str:
        return f"{self.tag}:{name}"
