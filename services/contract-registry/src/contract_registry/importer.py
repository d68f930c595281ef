"""Bulk import, the service layer: an import resource, and its records written in batches.

One transaction per batch holds, for every new contract, exactly what a single create writes (the
contract and version rows, the audit entry, the idempotency key and the outbox record) plus the
import's counters, so the counters never disagree with what was committed and the outbox guarantee
is the single create's. Keys are claimed first (`INSERT ... ON CONFLICT DO NOTHING`): a record
whose key another import holds is not created twice, even when both run at once."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from .adapters.ports import AuditEntry, ImportState, KeyClaim, OutboxRecord
from .domain import importing
from .domain.importing import Candidate, RawRecord, Rejection
from .service import Caller, NotFound, Registry

log = logging.getLogger(__name__)

MAX_REJECTIONS_KEPT = 1000  # the counters stay exact; the list of reasons is cut here


class ImportNotFound(NotFound):
    pass


@dataclass(frozen=True)
class Checked:
    """A batch after the rules: each record's contract to create, or its rejection."""

    now: datetime
    results: list[Candidate | Rejection]
    # Each candidate's outbox records by line, encoded here rather than in the writer's transaction.
    outbox: dict[int, list[OutboxRecord]]


class Importer:
    def __init__(self, registry: Registry, batch_size: int = 500) -> None:
        self.registry = registry
        self.uow = registry.uow
        self.clock = registry.clock
        self.batch_size = batch_size

    def begin(self, caller: Caller, received: int, import_id: str | None = None) -> ImportState:
        """A new import of `received` records, or a further part of the caller's import `import_id`."""
        now = self.clock.now()
        with self.uow() as uow:
            if import_id is None:
                state = ImportState(uuid.uuid4().hex, caller.tenant, caller.subject, now, now, received)
                uow.contracts.add_import(state)
            else:
                found = uow.contracts.get_import(caller.tenant, import_id, for_update=True)
                if found is None:
                    raise ImportNotFound(import_id)
                state = found
                state.received += received
                state.updated_at = now
                uow.contracts.save_import(state)
            uow.commit()
        return state

    def status(self, tenant: str, import_id: str) -> ImportState:
        with self.uow() as uow:
            state = uow.contracts.get_import(tenant, import_id)
        if state is None:
            raise ImportNotFound(import_id)
        return state

    def run(self, caller: Caller, import_id: str, records: list[RawRecord], traceparent: str | None = None) -> None:
        """Check and write the records of one part, batch by batch."""
        for batch in self.check(caller, records, traceparent):
            self.write(caller, import_id, batch)

    def check(self, caller: Caller, records: list[RawRecord], traceparent: str | None = None) -> list[Checked]:
        """The rules on every record and the good ones' outbox records (CPU only), in batches of `batch_size`."""
        out = []
        for start in range(0, len(records), self.batch_size):
            now = self.clock.now()
            results = [importing.check(r, tenant_id=caller.tenant, contract_id=str(uuid.uuid4()), now=now)
                       for r in records[start:start + self.batch_size]]
            out.append(Checked(now, results, {c.line: self.registry.outbox_records(c.change, now, traceparent)
                                              for c in results if isinstance(c, Candidate)}))
        return out

    def write(self, caller: Caller, import_id: str, batch: Checked) -> None:
        """One transaction for the batch; a batch the database refuses is written record by record."""
        now, checked, outbox = batch.now, batch.results, batch.outbox
        try:
            self._commit(caller, import_id, checked, now, outbox)
        except NotFound:
            raise
        except Exception as exc:
            if len(checked) == 1:
                self._reject_alone(caller, import_id, checked[0], now)
                return
            # A record the rules let through but the database refused: find it, keep the others. (When the
            # database is down, recording the first rejection fails too and the part stops, still pending.)
            log.warning("import %s: a batch of %d failed (%s); writing its records one by one", import_id,
                        len(checked), str(exc).splitlines()[0][:300])
            for one in checked:
                try:
                    self._commit(caller, import_id, [one], now, outbox)
                except NotFound:
                    raise
                except Exception:
                    self._reject_alone(caller, import_id, one, now)

    def _reject_alone(self, caller: Caller, import_id: str, one: Candidate | Rejection, now: datetime) -> None:
        log.warning("import %s: line %d could not be stored", import_id, one.line, exc_info=True)
        self._commit(caller, import_id, [Rejection(one.line, [importing.problem(
            "body", "could not be stored (see the registry's log)", "storage")])], now, {})

    def _commit(self, caller: Caller, import_id: str, checked: list[Candidate | Rejection], now: datetime,
                outbox: dict[int, list[OutboxRecord]]) -> None:
        rejections = [c for c in checked if isinstance(c, Rejection)]
        first: dict[str, Candidate] = {}
        repeats: list[Candidate] = []
        for c in checked:
            if isinstance(c, Candidate) and c.key in first:
                repeats.append(c)  # the same record twice in one batch: the first one counts
            elif isinstance(c, Candidate):
                first[c.key] = c
        with self.uow() as uow:
            repo = uow.contracts
            claimed = repo.claim_keys(caller.tenant, [KeyClaim(c.key, c.request_hash, c.change.snapshot.contract_id)
                                                      for c in first.values()], now)
            new = [c for c in first.values() if c.key in claimed]
            others = [c for c in first.values() if c.key not in claimed] + repeats
            known = repo.idempotency_keys(caller.tenant, sorted({c.key for c in others}))
            existing = 0
            for c in others:
                if known[c.key][0] == c.request_hash:
                    existing += 1
                else:
                    rejections.append(Rejection(c.line, [importing.problem(
                        "external_id", f"{c.key.removeprefix('import:')!r} was imported before with other "
                        f"content (contract {known[c.key][1]})", "idempotency_key_reused")]))
            repo.add_many([c.change.snapshot for c in new], now=now, actor=caller.subject)
            repo.audit_many([_audit(caller, c, import_id, now) for c in new])
            repo.enqueue_many([r for c in new for r in outbox[c.line]])
            state = repo.get_import(caller.tenant, import_id, for_update=True)
            if state is None:
                raise ImportNotFound(import_id)
            state.created += len(new)
            state.existing += existing
            state.rejected += len(rejections)
            room = max(0, MAX_REJECTIONS_KEPT - len(state.rejections))
            state.rejections.extend(r.as_json() for r in sorted(rejections, key=lambda r: r.line)[:room])
            state.updated_at = now
            repo.save_import(state)
            uow.commit()


def _audit(caller: Caller, c: Candidate, import_id: str, now: datetime) -> AuditEntry:
    snap = c.change.snapshot
    return AuditEntry(snap.tenant_id, snap.contract_id, c.change.action, caller.subject, caller.request_id,
                      snap.current.version, now, {**c.change.details, "import_id": import_id, "line": c.line,
                                                  "key": c.key})


def view(state: ImportState) -> dict[str, object]:
    """GET /v1/imports/{id}: accepted = created + already imported; pending = received, not yet written."""
    return {"import_id": state.id, "status": "done" if state.pending == 0 else "running",
            "received": state.received, "accepted": state.created + state.existing, "created": state.created,
            "existing": state.existing, "rejected": state.rejected, "pending": state.pending,
            "rejections": state.rejections, "rejections_kept": MAX_REJECTIONS_KEPT,
            "created_at": state.created_at.isoformat(), "updated_at": state.updated_at.isoformat()}
