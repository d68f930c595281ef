"""Inbound: obligation status from the obligation-engine and renewal decisions from the CRM."""

from __future__ import annotations

import threading

from confluent_kafka import Message

from contract_schema.codec import Envelope
from mesh_common.consumer import EventConsumer
from mesh_common.settings import KafkaSettings

from ..config import SERVICE, RegistrySettings
from ..service import Registry


class InboundConsumer:
    """The shared consume loop (decode -> handle -> commit, DLQ on bad input) in a background thread."""

    def __init__(self, registry: Registry, settings: RegistrySettings, kafka: KafkaSettings) -> None:
        self.registry = registry
        self.consumer = EventConsumer(kafka, service=SERVICE, group_id=settings.consumer_group,
                                      topics=[settings.obligation_events_topic, settings.renewal_decision_topic],
                                      handler=self._handle)
        self._thread: threading.Thread | None = None

    def _handle(self, envelope: Envelope, _msg: Message) -> None:
        self.registry.handle(envelope)  # idempotent on ce_id; unknown event types are ignored

    def start(self) -> None:
        self._thread = threading.Thread(target=self.consumer.run, name="registry-inbound", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.consumer.stop()
        if self._thread is not None:
            self._thread.join(timeout)
