"""saga-worker: saga orchestration on Apache Kafka, with saga state in Redis.

Everything a user needs is importable from here:

- the saga DSL: `SagaDefinition`, `Step`, `Parallel`, `Wait`, `ChildSaga`,
  `StepKind`, `RetryPolicy`;
- the app that ties saga types, start topics and participants together: `App`;
- participants: `Participant` with `Route` and the verdicts `Apply`, `Refuse`,
  `Fault` (effects in Redis, by a Lua script), and `HandlerParticipant` with
  `Handler` and `StepRefused` (effects outside Redis, by an async function);
- the wire envelope: `SagaCommand`, `CompensationCommand`, `WireMessage`, field
  types, the codec and `Topics`;
- running workers: `run_orchestrator`, `run_participant`, `run_all`, `Settings`,
  `make_redis` (a single Redis or a Redis Cluster, as the settings say);
- testing: `SagaHarness` (in memory, no broker) and `WorkerProcess`;
- the errors, all under `SagaWorkerError`.
"""

from saga_worker._version import __version__
from saga_worker.app import App, SagaType
from saga_worker.engine.decide import Decision, decide
from saga_worker.engine.definition import (
    ChildSaga,
    DefinitionRegistry,
    Parallel,
    SagaDefinition,
    Step,
    StepKind,
    Wait,
)
from saga_worker.engine.harness import Fail, FakeClock, NoReply, SagaHarness, StepScript, Succeed
from saga_worker.engine.retry import RetryPolicy
from saga_worker.engine.state import SagaState, SagaStatus, StepStatus
from saga_worker.errors import (
    AppLoadError,
    ConfigurationError,
    DefinitionError,
    EffectStoreUnavailableError,
    InvalidKnobError,
    ParticipantError,
    SagaWorkerError,
    StoreUnavailableError,
    UnknownDefinitionError,
    UnknownParticipantError,
    UnknownSagaTypeError,
)
from saga_worker.loading import load_app
from saga_worker.participant.definition import Participant, Route
from saga_worker.participant.handlers import Handler, HandlerParticipant, StepRefused, step_key
from saga_worker.participant.keys import ParticipantKeys
from saga_worker.participant.protocol import Apply, Fault, Kind, Refuse, Verdict
from saga_worker.runtime.cleanup import discard
from saga_worker.runtime.clock import utcnow
from saga_worker.runtime.kafka_clients import ensure_topics, make_producer
from saga_worker.runtime.redis_client import RedisClient, make_redis
from saga_worker.runtime.run import run_all, run_orchestrator, run_participant
from saga_worker.runtime.store import RedisSagaStore
from saga_worker.runtime.worker_processes import (
    WorkerProcess,
    saga_workers,
    settings_env,
    until_ready,
    with_health_ports,
)
from saga_worker.settings import Settings, load_settings
from saga_worker.wire import (
    COMPENSATION_COMPLETED,
    DEAD_LETTER,
    REPLY_TOPICS,
    STEP_COMPLETED,
    STEP_FAILED,
    TRACEPARENT,
    Attempt,
    CompensationCommand,
    DeadLetterRecord,
    DecodeError,
    ErrorText,
    Identifier,
    JsonObject,
    OpenModel,
    SagaCommand,
    SagaCompensationCompleted,
    SagaId,
    SagaOutcome,
    SagaReply,
    SagaStartRequested,
    SagaStepCompleted,
    SagaStepFailed,
    ShortText,
    Topics,
    WireMessage,
    decode,
    encode,
    header_value,
    make_headers,
)

__all__ = [  # noqa: RUF022 - grouped by purpose, as the docstring lists
    "__version__",
    # the wire envelope
    "COMPENSATION_COMPLETED",
    "DEAD_LETTER",
    "REPLY_TOPICS",
    "STEP_COMPLETED",
    "STEP_FAILED",
    "TRACEPARENT",
    # the app
    "App",
    # errors
    "AppLoadError",
    # participants
    "Apply",
    "Attempt",
    "ChildSaga",
    "CompensationCommand",
    "DeadLetterRecord",
    "ConfigurationError",
    # testing
    "Decision",
    "DecodeError",
    "DefinitionError",
    # the saga DSL
    "DefinitionRegistry",
    "EffectStoreUnavailableError",
    "ErrorText",
    "Fail",
    "FakeClock",
    "Fault",
    "Handler",
    "HandlerParticipant",
    "Identifier",
    "InvalidKnobError",
    "JsonObject",
    "Kind",
    "NoReply",
    "OpenModel",
    "Parallel",
    "Participant",
    "ParticipantError",
    "ParticipantKeys",
    # running workers, and the state they keep
    "RedisClient",
    "RedisSagaStore",
    "Refuse",
    "RetryPolicy",
    "Route",
    "SagaCommand",
    "SagaCompensationCompleted",
    "SagaDefinition",
    "SagaHarness",
    "SagaId",
    "SagaOutcome",
    "SagaStartRequested",
    "SagaReply",
    "SagaState",
    "SagaStatus",
    "SagaStepCompleted",
    "SagaStepFailed",
    "SagaType",
    "SagaWorkerError",
    "Settings",
    "ShortText",
    "Step",
    "StepKind",
    "StepRefused",
    "StepStatus",
    "StepScript",
    "StoreUnavailableError",
    "Succeed",
    "Topics",
    "UnknownDefinitionError",
    "UnknownParticipantError",
    "UnknownSagaTypeError",
    "Verdict",
    "Wait",
    "WireMessage",
    "WorkerProcess",
    "decide",
    "decode",
    "discard",
    "encode",
    "ensure_topics",
    "header_value",
    "load_app",
    "load_settings",
    "make_headers",
    "make_producer",
    "make_redis",
    "run_all",
    "run_orchestrator",
    "run_participant",
    "saga_workers",
    "settings_env",
    "step_key",
    "until_ready",
    "utcnow",
    "with_health_ports",
]
