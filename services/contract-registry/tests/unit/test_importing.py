"""Bulk import without I/O: reading NDJSON and CSV into numbered records, the single-create rules on each
(same problem shape, plus the line), the idempotency key; and the importer's batches on the fakes."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from contract_registry.adapters.fakes import FakeUnitOfWork
from contract_registry.bootstrap import AppConfig, Wiring, bootstrap
from contract_registry.domain import importing
from contract_registry.domain.importing import CSV_COLUMNS, Candidate, Rejection
from contract_registry.examples import draft, terms
from contract_registry.importer import ImportNotFound, view
from contract_registry.service import Caller
from contract_registry.settings import RegistrySettings

from contract_schema.codec import decode
from contract_schema.contract import ContractSnapshot
from mesh_common.clock import ManualClock

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
ALICE = Caller(subject="alice", tenant="t1", request_id="req-1")


def ndjson(*records: dict[str, Any] | str) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


def checked(data: bytes, kind: str = importing.NDJSON, first_line: int = 1) -> list[Candidate | Rejection]:
    return [importing.check(r, tenant_id="t1", contract_id=f"C-{r.line}", now=NOW)
            for r in importing.read(data, kind, first_line)]


def test_ndjson_records_are_numbered_by_their_line_and_blank_lines_are_skipped() -> None:
    out = checked(ndjson(draft(), "", draft(title="Second")), first_line=10)
    assert [type(c).__name__ for c in out] == ["Candidate", "Candidate"]
    assert [c.line for c in out] == [10, 12]
    first = out[0]
    assert isinstance(first, Candidate) and first.change.snapshot.contract_id == "C-10"
    assert first.change.snapshot.tenant_id == "t1" and first.change.snapshot.status.value == "draft"


def test_a_business_rule_is_rejected_with_the_line_and_the_field_a_single_create_names() -> None:
    bad = draft(terms=terms(end_date="2025-01-01"))
    [good, rejected] = checked(ndjson(draft(), bad))
    assert isinstance(good, Candidate)
    assert isinstance(rejected, Rejection) and rejected.line == 2
    [item] = [d for d in rejected.detail if d["field"] == "terms.end_date"]
    assert item["loc"] == ["body", "terms", "end_date"]
    assert item["type"] == "business_rule" and "before effective_date" in item["msg"]


def test_schema_errors_name_the_field_as_the_http_guard_does() -> None:
    [rejected] = checked(ndjson(draft(owner={"name": "x", "email": "not-an-e-mail"},
                                      terms=terms(rate_card=[{"line_id": "L1"}]))))
    assert isinstance(rejected, Rejection)
    fields = {d["field"] for d in rejected.detail}
    assert "owner.email" in fields and any(f.startswith("terms.rate_card[0].") for f in fields)
    assert all(d["loc"][0] == "body" and d["msg"] == d["problem"] for d in rejected.detail)


def test_unreadable_lines_nul_characters_and_non_objects_are_rejections_not_errors() -> None:
    out = checked(ndjson("{not json", "[1, 2]", draft(title="a\u0000b")))
    assert [(c.line, c.detail[0]["field"], c.detail[0]["type"]) for c in out if isinstance(c, Rejection)] == [
        (1, "body", "json_invalid"), (2, "body", "model_type"), (3, "title", "bad_text")]


def test_the_key_is_the_external_id_or_the_content_so_the_same_record_gets_the_same_key() -> None:
    a, b, c, d = checked(ndjson(draft(), draft(), draft(external_id="LEGACY-1"), draft(external_id="LEGACY-1",
                                                                                          title="Changed")))
    assert isinstance(a, Candidate) and isinstance(b, Candidate) and isinstance(c, Candidate)
    assert isinstance(d, Candidate)
    assert a.key == b.key and a.key.startswith("import:sha256:") and a.request_hash == b.request_hash
    assert c.key == d.key == "import:LEGACY-1" and c.request_hash != d.request_hash
    [bad] = checked(ndjson(draft(external_id=7)))
    assert isinstance(bad, Rejection) and bad.detail[0]["field"] == "external_id"


def csv_body(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def csv_row(**overrides: str) -> dict[str, str]:
    base = draft()
    row = {"external_id": "X-1", "title": base["title"], "counterparty_id": "V-100", "counterparty_name": "Acme",
           "direction": "buy-side", "contract_type": "services", "owner_name": "Olga",
           "owner_email": "olga@example.com", "timezone": "Europe/Berlin", "tags": "it|consulting",
           "currency": "EUR", "total_value": "120000.00", "effective_date": "2026-02-01", "end_date": "2027-01-31",
           "auto_renew": "true", "notice_period_days": "90",
           "rate_card": json.dumps(base["terms"]["rate_card"]), "obligations": ""}
    return row | overrides


def test_csv_columns_map_to_the_draft_and_rows_are_numbered_after_the_header() -> None:
    out = checked(csv_body([csv_row(), csv_row(external_id="X-2", end_date="2025-01-01")]), importing.CSV)
    good, bad = out
    assert isinstance(good, Candidate) and good.line == 2 and good.key == "import:X-1"
    snap = good.change.snapshot
    assert snap.tags == ("it", "consulting") and snap.owner.email == "olga@example.com"
    assert snap.current.auto_renew is True and len(snap.current.rate_card) == 2
    assert isinstance(bad, Rejection) and bad.line == 3 and bad.detail[0]["field"] == "terms.end_date"


def test_csv_unknown_columns_short_rows_and_bad_json_cells_are_named() -> None:
    [header] = checked(b"title,colour\nx,red\n", importing.CSV)
    assert isinstance(header, Rejection) and header.detail[0]["field"] == "header" and "colour" in \
        header.detail[0]["msg"]
    body = csv_body([csv_row(), csv_row(rate_card="[oops")]) + b"just-one-cell\n"
    out = checked(body, importing.CSV, first_line=100)
    assert [(c.line, c.detail[0]["field"]) for c in out if isinstance(c, Rejection)] == [
        (102, "terms.rate_card"), (103, "body")]
    assert set(CSV_COLUMNS) >= set(csv_row())


def test_media_types() -> None:
    assert importing.media_type("application/x-ndjson; charset=utf-8") == importing.NDJSON
    assert importing.media_type("application/json") == importing.NDJSON
    assert importing.media_type("TEXT/CSV") == importing.CSV
    assert importing.media_type("text/xml") is None


# ---- the importer on the fakes ---------------------------------------------------------------------

def wired(batch_size: int = 2) -> Wiring:
    cfg = AppConfig(database_url="unused", registry=RegistrySettings(topic_prefix="p.", import_batch_size=batch_size),
                    clock=ManualClock(NOW))
    return bootstrap(cfg, uow=FakeUnitOfWork())


def run(w: Wiring, data: bytes, import_id: str | None = None) -> dict[str, Any]:
    records = importing.read(data, importing.NDJSON)
    state = w.importer.begin(ALICE, len(records), import_id)
    assert view(state)["pending"] == len(records)
    w.importer.run(ALICE, state.id, records)
    return view(w.importer.status("t1", state.id))


def test_an_import_creates_each_good_record_once_with_its_outbox_record_and_counts_the_rest() -> None:
    w = wired()
    got = run(w, ndjson(draft(external_id="A"), draft(terms=terms(end_date="2025-01-01")), draft(external_id="B"),
                        draft(external_id="A")))
    assert {k: got[k] for k in ("received", "created", "existing", "rejected", "pending", "status")} == {
        "received": 4, "created": 2, "existing": 1, "rejected": 1, "pending": 0, "status": "done"}
    assert [r["line"] for r in got["rejections"]] == [2]
    repo = w.registry.uow().contracts  # type: ignore[attr-defined]
    assert len(repo.contracts) == 2
    events = [decode(r.record.value, r.record.headers).event for r in repo.outbox]
    assert [type(e) for e in events] == [ContractSnapshot, ContractSnapshot]
    assert {e.contract_id for e in events} == set(repo.contracts)  # type: ignore[attr-defined]
    assert [a.details["line"] for a in repo.audits] == [1, 3]


def test_a_re_import_creates_nothing_and_a_changed_record_under_a_known_external_id_is_rejected() -> None:
    w = wired()
    body = ndjson(draft(), draft(external_id="A"))
    run(w, body)
    again = run(w, body + b"\n" + ndjson(draft(external_id="A", title="Other")))
    assert (again["created"], again["existing"], again["rejected"]) == (0, 2, 1)
    assert again["rejections"][0]["detail"][0]["field"] == "external_id"
    assert len(w.registry.uow().contracts.contracts) == 2  # type: ignore[attr-defined]


def test_parts_add_to_one_import_and_another_tenant_cannot_see_it() -> None:
    w = wired()
    first = run(w, ndjson(draft(external_id="A")))
    both = run(w, ndjson(draft(external_id="B")), import_id=first["import_id"])
    assert both["import_id"] == first["import_id"] and (both["received"], both["created"]) == (2, 2)
    with pytest.raises(ImportNotFound):
        w.importer.status("t2", first["import_id"])


def test_bytes_that_are_not_utf8_reject_their_line_only() -> None:
    body = ndjson(draft(external_id="ok")) + b'\n{"title": "caf\xe9"}\n' + ndjson(draft(external_id="ok2"))
    out = checked(body)
    assert [type(c).__name__ for c in out] == ["Candidate", "Rejection", "Candidate"]
    bad = out[1]
    assert isinstance(bad, Rejection) and bad.line == 2 and bad.detail[0]["type"] == "bad_text"
