"""Inbound: obligation status from the obligation-engine and renewal decisions from the CRM."""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Message

from contract_schema.codec import Envelope
from contract_schema.topics import OBLIGATION_EVENTS, RENEWAL_DECISION
from mesh_common.consumer import EventConsumer
from mesh_common.settings import KafkaSettings

from ..settings import SERVICE, RegistrySettings


class InboundConsumer:
    """The shared consume loop (decode -> handle -> commit, DLQ on bad input) in a background thread."""

    def __init__(self, handle: Callable[[Envelope], object], settings: RegistrySettings,
                 kafka: KafkaSettings) -> None:
        self.handle = handle  # the service's: idempotent on ce_id
        carries = {settings.obligation_events_topic: OBLIGATION_EVENTS,
                   settings.renewal_decision_topic: RENEWAL_DECISION}
        self.consumer = EventConsumer(kafka, service=SERVICE, group_id=settings.consumer_group,
                                      topics=list(carries), carries=carries, handler=self._handle)
        self._thread: threading.Thread | None = None

    def _handle(self, envelope: Envelope, _msg: Message) -> None:
        self.handle(envelope)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.consumer.run, name="registry-inbound", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.consumer.stop()
        if self._thread is not None:
            self._thread.join(timeout)
