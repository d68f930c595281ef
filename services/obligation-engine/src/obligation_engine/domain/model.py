"""Obligation instances and the per-contract state the engine keeps (one table value per contract)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from contract_schema import ContractSnapshot


class Status(StrEnum):
    SCHEDULED = "scheduled"
    DUE_SOON = "due-soon"
    OVERDUE = "overdue"
    ESCALATED = "escalated"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


OPEN = frozenset({Status.SCHEDULED, Status.DUE_SOON, Status.OVERDUE, Status.ESCALATED})


class Transition(StrEnum):
    DUE_SOON = "due-soon"
    OVERDUE = "overdue"
    ESCALATED = "escalated"


@dataclass(frozen=True, slots=True)
class Instance:
    """One occurrence of an obligation. `revision` grows on every reschedule so event ids stay unique."""

    instance_id: str
    obligation_id: str
    kind: str
    title: str
    due_at: datetime | None
    version: int
    revision: int = 1
    status: Status = Status.SCHEDULED
    lead_days: int | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    overdue_since: datetime | None = None
    completed_at: datetime | None = None
    on_time: bool | None = None
    origin: str | None = None
    source_system: str | None = None
    evidence_ref: str | None = None
    sla_met: bool | None = None
    measured: Decimal | None = None
    credit: Decimal | None = None
    # Already past due when the engine first learned of it (a contract registered or amended late):
    # tracked as overdue and completable, but covered by one summary alert, never escalated one by one.
    found_overdue: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def with_(self, **changes: Any) -> Instance:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Parked:
    """An inbound record that named a contract or obligation not known yet: retried, then dead-lettered."""

    event_id: str
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    parked_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class PendingRelease:
    """A milestone billing release ERP has not accepted yet: retried until it is, or until the give-up time
    (wall clock, measured from the first failed round), then dead-lettered with a red alert."""

    command_id: str  # the ReleaseMilestoneBilling ce_id, also the Idempotency-Key ERP sees on every try
    command: str  # the ReleaseMilestoneBilling JSON
    trigger: Parked | None = None  # the input that completed the milestone: dead-lettered on give-up
    attempts: int = 0  # failed rounds so far
    failing_since: datetime | None = None  # wall time of the first failed round
    last_error: str | None = None


@dataclass
class ContractState:
    contract_id: str
    partition: int
    snapshot: ContractSnapshot | None = None
    terminated_on: date | None = None
    instances: dict[str, Instance] = field(default_factory=dict)
    seen: tuple[str, ...] = ()
    parked: tuple[Parked, ...] = ()
    replan_at: datetime | None = None
    # Closed instances due before this were pruned: an expansion that yields one again is not new work.
    history_before: datetime | None = None
    releases: tuple[PendingRelease, ...] = ()  # ERP releases not accepted yet

    def copy(self) -> ContractState:
        return ContractState(self.contract_id, self.partition, self.snapshot, self.terminated_on,
                             dict(self.instances), self.seen, self.parked, self.replan_at, self.history_before,
                             self.releases)

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.seen

    def remember(self, event_id: str, keep: int = 500) -> None:
        self.seen = (self.seen + (event_id,))[-keep:]

    # --- serialisation (the Faust table stores bytes) ---

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "contract_id": self.contract_id,
            "partition": self.partition,
            "snapshot": self.snapshot.model_dump(mode="json") if self.snapshot else None,
            "terminated_on": self.terminated_on.isoformat() if self.terminated_on else None,
            "instances": [_instance_doc(i) for i in self.instances.values()],
            "seen": list(self.seen),
            "parked": [_parked_doc(p) for p in self.parked],
            "replan_at": self.replan_at.isoformat() if self.replan_at else None,
            "history_before": self.history_before.isoformat() if self.history_before else None,
        }
        if self.releases:
            doc["releases"] = [_release_doc(r) for r in self.releases]
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ContractState:
        doc = json.loads(raw)
        instances = [_instance_from(d) for d in doc["instances"]]
        return cls(
            contract_id=doc["contract_id"],
            partition=int(doc["partition"]),
            snapshot=ContractSnapshot.model_validate(doc["snapshot"]) if doc["snapshot"] else None,
            terminated_on=date.fromisoformat(doc["terminated_on"]) if doc["terminated_on"] else None,
            instances={i.instance_id: i for i in instances},
            seen=tuple(doc["seen"]),
            parked=tuple(_parked_from(p) for p in doc["parked"]),
            replan_at=_dt(doc["replan_at"]),
            history_before=_dt(doc.get("history_before")),
            releases=tuple(_release_from(r) for r in doc.get("releases", ())),
        )


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


_DT_FIELDS = {"due_at", "window_start", "window_end", "overdue_since", "completed_at"}
_DEC_FIELDS = {"measured", "credit"}


def _instance_doc(inst: Instance) -> dict[str, Any]:
    doc = asdict(inst)
    for name in _DT_FIELDS:
        doc[name] = doc[name].isoformat() if doc[name] else None
    for name in _DEC_FIELDS:
        doc[name] = str(doc[name]) if doc[name] is not None else None
    doc["status"] = str(inst.status)
    if not inst.found_overdue:
        del doc["found_overdue"]
    return {k: v for k, v in doc.items() if v is not None}


def _instance_from(doc: dict[str, Any]) -> Instance:
    values: dict[str, Any] = {}
    for f in fields(Instance):
        if f.name not in doc:
            continue
        v = doc[f.name]
        if f.name in _DT_FIELDS:
            v = _dt(v)
        elif f.name in _DEC_FIELDS:
            v = Decimal(v)
        elif f.name == "status":
            v = Status(v)
        values[f.name] = v
    return Instance(**values)


def _parked_doc(p: Parked) -> dict[str, Any]:
    return {"event_id": p.event_id, "topic": p.topic, "partition": p.partition, "offset": p.offset,
            "key": p.key.hex(), "value": p.value.hex(), "headers": [[k, v.hex()] for k, v in p.headers],
            "parked_at": p.parked_at.isoformat(), "reason": p.reason}


def _parked_from(d: dict[str, Any]) -> Parked:
    return Parked(event_id=d["event_id"], topic=d["topic"], partition=int(d["partition"]), offset=int(d["offset"]),
                  key=bytes.fromhex(d["key"]), value=bytes.fromhex(d["value"]),
                  headers=tuple((k, bytes.fromhex(v)) for k, v in d["headers"]),
                  parked_at=datetime.fromisoformat(d["parked_at"]), reason=d["reason"])


def _release_doc(r: PendingRelease) -> dict[str, Any]:
    return {"command_id": r.command_id, "command": r.command,
            "trigger": _parked_doc(r.trigger) if r.trigger is not None else None, "attempts": r.attempts,
            "failing_since": r.failing_since.isoformat() if r.failing_since else None, "last_error": r.last_error}


def _release_from(d: dict[str, Any]) -> PendingRelease:
    return PendingRelease(command_id=d["command_id"], command=d["command"],
                          trigger=_parked_from(d["trigger"]) if d.get("trigger") else None,
                          attempts=int(d.get("attempts", 0)), failing_since=_dt(d.get("failing_since")),
                          last_error=d.get("last_error"))
