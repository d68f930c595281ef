"""Publish one event from an HTTP request and wait for the broker's answer, as an HTTP problem if it fails.

A 202 must mean the record is on the topic: `flush()` returning 0 only says the queue is empty,
so the delivery report is checked. A record over Kafka's message size is the client's problem
(413 naming the body), a broker that does not answer in time is ours (503, retry later).
"""

from __future__ import annotations

from datetime import datetime

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from fastapi.responses import JSONResponse

from contract_schema.base import Event
from contract_schema.codec import encode

from .http_guard import problem
from .tracing import current_traceparent

_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, getattr(KafkaError, "RECORD_LIST_TOO_LARGE", -1),
              getattr(KafkaError, "_MSG_SIZE_TOO_LARGE", -1)}


def publish_or_problem(producer: Producer, event: Event, *, topic: str, source: str, event_id: str,
                       time: datetime | None = None, timeout: float = 10.0) -> JSONResponse | None:
    """Produce `event` and wait for its delivery; None when the broker has it, else the answer to give."""
    record = encode(event, source=source, event_id=event_id, time=time, traceparent=current_traceparent())
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    try:
        producer.produce(topic, key=record.key, value=record.value, headers=list(record.headers),
                         on_delivery=delivered)
    except KafkaException as exc:
        errors.append(exc.args[0])
    except BufferError:
        return _unavailable("the producer queue is full")
    if not errors and producer.flush(timeout) > 0:
        return _unavailable("the broker did not acknowledge the event in time")
    if not errors:
        return None
    err = errors[0]
    if err.code() in _TOO_LARGE:
        size = len(record.value or b"") + len(record.key or b"")
        return problem(413, "body", f"the event would be {size} bytes, more than the broker accepts in one "
                       "message; split the request", "too_large")
    return _unavailable(f"the broker refused the event: {err.str()}")


def _unavailable(reason: str) -> JSONResponse:
    response = problem(503, "", f"{reason}; retry later", "unavailable")
    response.headers["Retry-After"] = "5"
    return response
