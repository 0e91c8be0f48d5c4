"""A payment participant written against the wire contract alone, with another client.

kafka-python, synchronous, in a thread; it reads only the minimal command bodies and
answers with only the minimal reply bodies of DESIGN.md: no command_id, no attempt,
no message_id. If saga-worker leaned on anything beyond the contract, sagas driven
through this participant would stall or go wrong.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer


@dataclass
class ForeignPayment:
    bootstrap: str
    prefix: str
    charged: dict[str, int] = field(default_factory=dict)  # saga_id -> amount
    refunded: dict[str, int] = field(default_factory=dict)
    assigned: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _serve(self) -> None:
        consumer = KafkaConsumer(
            f"{self.prefix}PaymentService.ProcessPayment",
            f"{self.prefix}PaymentService.RefundPayment",
            bootstrap_servers=self.bootstrap,
            group_id=f"{self.prefix}foreign-payment",
            auto_offset_reset="earliest",
            # A group joined before the client saw its topics' partitions assigns
            # nothing until metadata is refreshed: every second, not every 5 minutes.
            metadata_max_age_ms=1000,
        )
        producer = KafkaProducer(bootstrap_servers=self.bootstrap)
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=200)
                if consumer.assignment():
                    self.assigned.set()
                for records in batch.values():
                    for record in records:
                        topic, body = self._answer(record.topic, json.loads(record.value))
                        producer.send(
                            self.prefix + topic,
                            json.dumps(body).encode(),
                            key=str(body["saga_id"]).encode(),
                        )
                producer.flush()
        finally:
            consumer.close()
            producer.close()

    def _answer(self, topic: str, command: dict[str, object]) -> tuple[str, dict[str, object]]:
        saga_id, step = str(command["saga_id"]), str(command["step_name"])
        items = command.get("items") or []
        assert isinstance(items, list)
        amount = sum(int(i["quantity"]) * int(i["unit_price"]) for i in items)
        if topic.endswith("RefundPayment"):
            self.refunded[saga_id] = self.charged.get(saga_id, 0)
            return "SagaCompensationCompleted", {"saga_id": saga_id, "step_name": step}
        if command.get("payment_method") == "declined_card":
            return "SagaStepFailed", {"saga_id": saga_id, "step_name": step, "error": "declined"}
        self.charged.setdefault(saga_id, amount)
        return "SagaStepCompleted", {
            "saga_id": saga_id,
            "step_name": step,
            "result": {"charged": amount},
        }
