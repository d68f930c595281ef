"""The Faust agents: each reads one topic, decodes every record (the bad ones to the DLQ with their
original bytes and the reason), waits where an invoice must wait for its contract state (the state
fence, docs/adr/0011), and hands the rest to the service. What happens on each event is the service's
HANDLERS table; the park-expiry agent and the sweep timer are the service's own (parking.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.types import EventT

from contract_schema import DecodeError, decode
from contract_schema.topics import CONTRACT_STATE, INVOICE_RECEIVED, OBLIGATION_EVENTS, TopicSpec
from mesh_common.clock import Clock
from mesh_common.dlq import dead_letter_record
from mesh_common.faust_delivery import StallWatch
from mesh_common.ops import DEAD_LETTERED, PROCESSED
from mesh_common.tracing import consume_span

from ..service import ValidatorService
from ..settings import SERVICE
from .state_fence import StateFence

log = logging.getLogger(__name__)


class Agents:
    def __init__(self, app: faust.App, service: ValidatorService, fence: StateFence, watch: StallWatch,
                 clock: Clock) -> None:
        self.app, self.service, self.fence, self.watch, self.clock = app, service, fence, watch, clock
        self.ready = False  # the first rebalance completed
        self._dlq_topics: dict[str, Any] = {}

    async def stall_watch(self) -> None:
        if (report := self.watch.check()) is not None:
            log.warning(report)

    async def _events(self, stream: Any, spec: TopicSpec) -> AsyncIterator[tuple[EventT[Any], Any]]:
        """Decode every record; the undecodable, and events of a type the topic does not carry (the
        catalog's rule for every service), go to the DLQ with the reason and the stream goes on."""
        async for event in stream.events():
            self.watch.handled += 1
            headers = list((event.headers or {}).items())
            try:
                envelope = decode(event.value, headers)
                if (misplaced := spec.misplaced(envelope.event)) is not None:
                    raise DecodeError(misplaced, field_path="ce_type")
            except DecodeError as exc:
                await self._dead_letter(event, exc)
                if spec is CONTRACT_STATE:
                    self.fence.processed(event.message.partition, event.message.offset)
                continue
            yield event, envelope

    async def _dead_letter(self, event: EventT[Any], error: BaseException | str) -> None:
        message = event.message
        dlq_name, record = dead_letter_record(
            topic=message.topic, partition=message.partition, offset=message.offset, key=event.key,
            value=event.value, headers=list((event.headers or {}).items()), error=error, service=SERVICE,
            now=self.clock.now())
        topic = self._dlq_topics.get(dlq_name)
        if topic is None:
            topic = self._dlq_topics[dlq_name] = self.app.topic(
                dlq_name, key_serializer="raw", value_serializer="raw")
        # Wait for the broker's ack: the source offset must not be committed before the dead letter is safe.
        fut = await topic.send(key=record.key, value=record.value, headers=record.headers, force=True)
        await fut
        DEAD_LETTERED.labels(SERVICE, message.topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset,
                    getattr(error, "reason", error))

    async def _guarded(self, event: EventT[Any], envelope: Any) -> None:
        """The event's handler from the service's table; an exception dead-letters the record."""
        topic = event.message.topic
        try:
            with consume_span(SERVICE, topic, list((event.headers or {}).items())):
                await self.service.handle(envelope, event.value)
            PROCESSED.labels(SERVICE, topic).inc()
        except Exception as exc:  # bad input is data, not a crash
            log.exception("handler failed on %s[%s]@%s", topic, event.message.partition, event.message.offset)
            await self._dead_letter(event, exc)

    # --- input topics -----------------------------------------------------------------------

    async def invoices(self, stream: Any) -> None:
        async for event, envelope in self._events(stream, INVOICE_RECEIVED):
            if not await self._caught_up(event):
                continue
            await self._guarded(event, envelope)

    async def contract_state(self, stream: Any) -> None:
        async for event, envelope in self._events(stream, CONTRACT_STATE):
            await self._guarded(event, envelope)
            self.fence.processed(event.message.partition, event.message.offset)

    async def obligations(self, stream: Any) -> None:
        async for event, envelope in self._events(stream, OBLIGATION_EVENTS):
            await self._guarded(event, envelope)

    # --- internal topics --------------------------------------------------------------------

    async def vendor_directory(self, stream: Any) -> None:
        async for event in stream.events():
            self.watch.handled += 1
            try:
                await self.service.handle_vendor_directory(json.loads(event.value))
            except Exception:  # an internal record we wrote ourselves; log, never crash the agent
                log.exception("vendor directory update failed for %r", event.key)

    async def invoices_by_contract(self, stream: Any) -> None:
        async for event in stream.events():
            self.watch.handled += 1
            if not await self._caught_up(event):
                continue
            try:
                await self.service.handle_routed(json.loads(event.value))
            except Exception:  # an internal record we wrote ourselves; log, never crash the agent
                log.exception("routed invoice failed for %r", event.key)

    async def _caught_up(self, event: EventT[Any]) -> bool:
        """Wait for the contract state this invoice was sent after; False if its partition moved away."""
        message = event.message
        return await self.fence.wait(message.topic, message.partition, message.offset)
