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

On a Redis Cluster (`spread`), a participant without domain keys (every handler
participant, and a script participant that declares none) keys its two records by
the saga instead, `<prefix>{<p>:<saga_id>}:reply:...` and `...:effect:...`, so they
spread over every slot while a command's reply and its step's record, which one
script changes together, share one. A participant with domain keys keeps the
participant's tag: its script changes the records and the domain state atomically,
so they must share a slot; the sample's participants are such (a multi-SKU
reservation is one script over the participant's stock), a property of the sample,
not of the library: a participant whose domain state is per saga may declare no
domain keys and keep it in its effect record's result. On a single Redis the layout
is the one above, whatever `spread` says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParticipantKeys:
    prefix: str
    participant: str
    spread: bool = False  # records tagged by saga (see above)

    @property
    def tag(self) -> str:
        return f"{self.prefix}{{{self.participant}}}"

    def records_tag(self, saga_id: str | None) -> str:
        if self.spread and saga_id is not None:
            return f"{self.prefix}{{{self.participant}:{saga_id}}}"
        return self.tag

    def reply(self, idempotency_key: str, saga_id: str | None = None) -> str:
        return f"{self.records_tag(saga_id)}:reply:{idempotency_key}"

    def effect(self, saga_id: str, step_name: str) -> str:
        return f"{self.records_tag(saga_id)}:effect:{saga_id}/{step_name}"

    def domain(self, name: str) -> str:
        return f"{self.tag}:{name}"
