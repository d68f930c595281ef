"""Kafka records <-> typed events, as CloudEvents 1.0 in Kafka binary mode.

Headers carry the CloudEvents attributes (ce_id, ce_source, ce_type, ce_specversion,
ce_time, ce_subject) and the W3C traceparent; the value is the event as JSON.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from .base import EVENT_TYPES, Event

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


class DecodeError(Exception):
    """A record that cannot become a typed event. `reason` names the header or field and the problem."""

    def __init__(self, reason: str, *, field_path: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field_path = field_path


@dataclass(frozen=True)
class Envelope:
    """A decoded event with its CloudEvents attributes."""

    event: Event
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    traceparent: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """What to hand to a Kafka producer."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def encode(event: Event, *, source: str, event_id: str | None = None, time: datetime | None = None,
           traceparent: str | None = None, extensions: Mapping[str, str] | None = None) -> Record:
    """Turn an event into a Kafka record. Pass a stable `event_id` wherever retries may re-send."""
    when = time or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    headers: list[tuple[str, bytes]] = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_source", source.encode()),
        ("ce_type", event.ce_type.encode()),
        ("ce_time", when.isoformat().encode()),
        ("ce_subject", event.subject.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    for name, value in (extensions or {}).items():
        headers.append((f"ce_{name}", value.encode()))
    return Record(key=event.key.encode(), value=event.model_dump_json().encode(), headers=headers)


def header_map(headers: Headers) -> dict[str, str]:
    """Headers as str -> str (last one wins), whatever shape the client library gives them in."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    out: dict[str, str] = {}
    for name, value in items:
        if value is None:
            continue
        try:
            out[name] = value.decode() if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as exc:
            raise DecodeError(f"header {name!r} is not UTF-8") from exc
    return out


_STANDARD = {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject"}


def decode(value: bytes | None, headers: Headers) -> Envelope:
    """Turn a Kafka record into a typed event, or raise DecodeError naming what is wrong."""
    h = header_map(headers)
    for required in ("ce_specversion", "ce_id", "ce_source", "ce_type"):
        if not h.get(required):
            raise DecodeError(f"missing CloudEvents header {required!r}", field_path=required)
    if h["ce_specversion"] != SPEC_VERSION:
        raise DecodeError(f"unsupported ce_specversion {h['ce_specversion']!r}", field_path="ce_specversion")
    event_cls = EVENT_TYPES.get(h["ce_type"])
    if event_cls is None:
        raise DecodeError(f"unknown ce_type {h['ce_type']!r}", field_path="ce_type")
    if value is None:
        raise DecodeError("record has no value (tombstone)", field_path="value")
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"value is not JSON: {exc}", field_path="value") from exc
    if not isinstance(payload, dict):
        raise DecodeError("value is not a JSON object", field_path="value")
    try:
        event = event_cls.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"]) or "value"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise DecodeError(f"{event_cls.__name__}.{path}: {first['msg']}{more}", field_path=path) from exc
    time_text = h.get("ce_time")
    try:
        when = datetime.fromisoformat(time_text) if time_text else datetime.now(UTC)
    except ValueError as exc:
        raise DecodeError(f"ce_time {time_text!r} is not an RFC 3339 time", field_path="ce_time") from exc
    extensions = {k[3:]: v for k, v in h.items() if k.startswith("ce_") and k not in _STANDARD}
    return Envelope(event=event, id=h["ce_id"], source=h["ce_source"], type=h["ce_type"], time=when,
                    subject=h.get("ce_subject"), traceparent=h.get("traceparent"), extensions=extensions)
