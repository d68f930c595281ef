"""Bulk import, the pure part: NDJSON and CSV bodies -> numbered records -> contracts or rejections.

Each record is checked by the same rules as POST /v1/contracts (the ContractDraft schema, text
PostgreSQL can hold, the business rules) and a rejection has the same problem shape as a single
create's 422, plus the line number. A record's idempotency key is its `external_id` (the id in the
system it comes from) when it has one, else a hash of its content: importing the same record
twice creates one contract. No I/O here."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, ValidationError

from mesh_common.http_guard import bad_text, field_of, printable, text_problem, truncate

from .contracts import Change, create
from .model import ContractDraft
from .validation import BusinessRuleError

NDJSON = "application/x-ndjson"
CSV = "text/csv"
# application/json is read as NDJSON: one JSON object is a one-line NDJSON document.
MEDIA_TYPES = {NDJSON: NDJSON, "application/jsonl": NDJSON, "application/json": NDJSON, CSV: CSV}
MAX_EXTERNAL_ID = 150  # idempotency_keys.key is 200 wide, with the "import:" prefix

# CSV column -> field of the draft (dotted). Empty cells are left out; `tags` is `|`-separated;
# `rate_card` and `obligations` hold the JSON array of the NDJSON form.
CSV_COLUMNS: dict[str, str] = {
    "external_id": "external_id",
    "title": "title",
    "counterparty_id": "counterparty.party_id",
    "counterparty_name": "counterparty.name",
    "counterparty_erp_vendor_id": "counterparty.erp_vendor_id",
    "counterparty_crm_account_id": "counterparty.crm_account_id",
    "direction": "direction",
    "contract_type": "contract_type",
    "business_unit": "business_unit",
    "owner_name": "owner.name",
    "owner_email": "owner.email",
    "backup_owner_name": "backup_owner.name",
    "backup_owner_email": "backup_owner.email",
    "timezone": "timezone",
    "tags": "tags",
    "currency": "terms.currency",
    "total_value": "terms.total_value",
    "signed_date": "terms.signed_date",
    "effective_date": "terms.effective_date",
    "end_date": "terms.end_date",
    "auto_renew": "terms.auto_renew",
    "renewal_term_months": "terms.renewal_term_months",
    "notice_period_days": "terms.notice_period_days",
    "payment_terms_days": "terms.payment_terms_days",
    "termination_terms": "terms.termination_terms",
    "not_to_exceed": "terms.not_to_exceed",
    "rate_card": "terms.rate_card",
    "obligations": "terms.obligations",
}
_JSON_COLUMNS = {"rate_card", "obligations"}


def problem(field_: str, msg: str, kind: str, input_: Any = None) -> dict[str, Any]:
    """One problem, shaped like a single create's 422 detail item."""
    out: dict[str, Any] = {"loc": ["body", *field_.split(".")], "field": field_, "msg": msg, "type": kind}
    if input_ is not None:
        out["input"] = truncate(input_)
    return out


@dataclass(frozen=True)
class Rejection:
    line: int
    detail: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "detail": self.detail}


@dataclass(frozen=True)
class RawRecord:
    """A record as read from the body: its line number and the fields, or why it could not be read."""

    line: int
    fields: dict[str, Any] | None  # a CSV row, as nested fields
    rejection: Rejection | None = None
    text: str | None = None  # an NDJSON line, parsed by pydantic itself (faster than json.loads + validate)


@dataclass(frozen=True)
class Candidate:
    """A record that passed every rule: the contract to create, unless its key was imported before."""

    line: int
    key: str
    request_hash: str
    change: Change = field(compare=False)


def media_type(content_type: str | None) -> str | None:
    """NDJSON or CSV for a Content-Type header (parameters such as charset ignored), None if neither."""
    base = (content_type or NDJSON).split(";")[0].strip().lower()
    return MEDIA_TYPES.get(base)


class ImportRecord(ContractDraft):
    """A record: a ContractDraft, and optionally its id in the system it comes from (the idempotency key)."""

    external_id: Annotated[str, Field(min_length=1, max_length=MAX_EXTERNAL_ID)] | None = None


def read(data: bytes, kind: str, first_line: int = 1) -> list[RawRecord]:
    """Split a body into records numbered by their line in the source file (`first_line` for a part).
    Bytes that are not UTF-8 become unpaired surrogates, which the text rule names by field."""
    text = data.decode("utf-8", "surrogateescape")
    return read_csv(text, first_line) if kind == CSV else read_ndjson(text, first_line)


def read_ndjson(text: str, first_line: int = 1) -> list[RawRecord]:
    return [RawRecord(n, None, text=line) for n, line in enumerate(text.split("\n"), first_line) if line.strip()]


def read_csv(text: str, first_line: int = 1) -> list[RawRecord]:
    """A header row naming CSV_COLUMNS, then one contract per row. Line numbers count the header."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return []
    unknown = [h for h in header if h not in CSV_COLUMNS]
    out: list[RawRecord] = []
    if unknown:
        return [RawRecord(first_line, None, Rejection(first_line, [problem(
            "header", f"unknown column(s) {', '.join(map(repr, unknown))}; known: {', '.join(CSV_COLUMNS)}",
            "csv_header")]))]
    for row in reader:
        n = first_line + reader.line_num - 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            out.append(RawRecord(n, None, Rejection(n, [problem(
                "body", f"{len(row)} cells, the header has {len(header)}", "csv_row")])))
            continue
        fields, bad = csv_fields(dict(zip(header, row, strict=True)))
        out.append(RawRecord(n, None, Rejection(n, bad)) if bad else RawRecord(n, fields))
    return out


def csv_fields(row: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One CSV row as the nested record NDJSON would carry (CSV_COLUMNS), and cells that are not readable."""
    out: dict[str, Any] = {}
    bad: list[dict[str, Any]] = []
    for column, cell in row.items():
        cell = cell.strip()
        if not cell:
            continue
        target = CSV_COLUMNS[column]
        value: Any = cell
        if column == "tags":
            value = [t.strip() for t in cell.split("|") if t.strip()]
        elif column in _JSON_COLUMNS:
            try:
                value = json.loads(cell)
            except (ValueError, RecursionError):
                bad.append(problem(target, "must be a JSON array", "json_invalid", cell))
                continue
        node = out
        *parents, leaf = target.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return out, bad


def record_key(record: ImportRecord) -> tuple[str, str]:
    """(idempotency key, content hash): `external_id` when given, else the content hash itself."""
    request_hash = hashlib.sha256(record.model_dump_json(exclude={"external_id"}).encode()).hexdigest()
    return (f"import:{record.external_id}" if record.external_id else f"import:sha256:{request_hash}"), request_hash


def _plain(text: str) -> bool:
    """No NUL and nothing that could decode to one or to an unpaired surrogate: the text rule has nothing to find."""
    return text.isascii() and "\x00" not in text and "\\u" not in text


def check(record: RawRecord, *, tenant_id: str, contract_id: str, now: datetime) -> Candidate | Rejection:
    """The single-create rules on one record: the contract it would create, or every problem found."""
    if record.rejection is not None:
        return record.rejection
    try:
        if record.text is not None:
            if not _plain(record.text) and (bad := _bad_text_in(record.text)):
                return Rejection(record.line, bad)
            parsed = ImportRecord.model_validate_json(record.text)
        else:
            parsed = ImportRecord.model_validate(record.fields)
        if record.text is None or not _plain(record.text):
            texts = [problem(path, why, "bad_text") for path, why in bad_text(parsed.model_dump())]
            if texts:
                return Rejection(record.line, texts)
        change = create(parsed, contract_id=contract_id, tenant_id=tenant_id, now=now)
    except ValidationError as exc:
        return Rejection(record.line, [_schema_problem(e) for e in exc.errors()])
    except BusinessRuleError as exc:
        return Rejection(record.line, [problem(v.field, v.message, "business_rule") for v in exc.violations])
    key, request_hash = record_key(parsed)
    return Candidate(record.line, key, request_hash, change)


def _bad_text_in(line: str) -> list[dict[str, Any]]:
    """Bytes that were not UTF-8 (surrogates now) stop the line before the JSON parser sees them."""
    if text_problem(line.replace("\x00", "")) is None:
        return []
    return [problem("body", "not UTF-8", "bad_text", line.encode("utf-8", "backslashreplace").decode())]


def _schema_problem(error: Any) -> dict[str, Any]:
    loc = ["body", *(printable(p) if isinstance(p, str) else p for p in error.get("loc", ()))]
    out = {"loc": loc, "field": field_of(loc), "msg": printable(str(error.get("msg", ""))),
           "type": error.get("type", "value_error")}
    out["problem"] = out["msg"]  # as mesh_common.http_guard answers a single create's schema errors
    if "input" in error:
        out["input"] = truncate(error["input"])
    return out
