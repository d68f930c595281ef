"""Dead letters: a record that cannot be processed goes to <topic>.dlq with its original
key, bytes and headers, plus why, so nothing is lost and the service keeps going.
The shell sends the record with whatever producer it has; inspection and replay live in
`python -m mesh_common.dlq_tool`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from contract_schema.codec import Record
from contract_schema.topics import DLQ_SUFFIX

DLQ_HEADER_PREFIX = "dlq_"
# Headers as client libraries hand them out: a list of pairs or a mapping, str or bytes values.
AnyHeaders = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


def header_pairs(headers: AnyHeaders) -> list[tuple[str, bytes | None]]:
    """Normalise headers to [(name, bytes)], the shape every producer accepts."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in items]


@dataclass(frozen=True)
class DeadLetter:
    """Why a record was rejected, as read back from a DLQ record's headers."""

    source_topic: str
    source_partition: int
    source_offset: int
    error_type: str
    reason: str
    service: str
    time: str


def dead_letter_record(*, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None, headers: AnyHeaders,
                       error: BaseException | str, service: str,
                       now: datetime | None = None) -> tuple[str, Record]:
    """(DLQ topic, record) for a failed record: original bytes and headers kept as they came."""
    error_type = type(error).__name__ if isinstance(error, BaseException) else "Rejected"
    reason = getattr(error, "reason", None) or str(error)
    extra = {
        "source_topic": topic,
        "source_partition": str(partition),
        "source_offset": str(offset),
        "error_type": error_type,
        "reason": reason[:4000],
        "service": service,
        "time": (now or datetime.now(UTC)).isoformat(),
    }
    original = original_headers(headers)
    all_headers = original + [(DLQ_HEADER_PREFIX + k, v.encode()) for k, v in extra.items()]
    return topic + DLQ_SUFFIX, Record(key=key or b"", value=value or b"", headers=all_headers)


def read_dead_letter(headers: AnyHeaders) -> DeadLetter:
    h = {k[len(DLQ_HEADER_PREFIX):]: (v or b"").decode("utf-8", "replace")
         for k, v in header_pairs(headers) if k.startswith(DLQ_HEADER_PREFIX)}
    return DeadLetter(
        source_topic=h.get("source_topic", ""), source_partition=int(h.get("source_partition", "-1")),
        source_offset=int(h.get("source_offset", "-1")), error_type=h.get("error_type", ""),
        reason=h.get("reason", ""), service=h.get("service", ""), time=h.get("time", ""))


def original_headers(headers: AnyHeaders) -> list[tuple[str, bytes]]:
    """The headers the record had before it was dead-lettered (for replay)."""
    return [(k, v or b"") for k, v in header_pairs(headers) if not k.startswith(DLQ_HEADER_PREFIX)]
