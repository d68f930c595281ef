"""The import command's parts (no I/O): whole records under the size, numbered so that the server's
line numbers are the file's."""

from __future__ import annotations

import json

from contract_registry.domain import importing
from contract_registry.entrypoints.import_client import bar, parts
from contract_registry.examples import draft


def lines_as_the_server_reads_them(text: str, kind: str, part_bytes: int) -> list[tuple[int, str | None]]:
    out = []
    for part in parts(text, kind, part_bytes):
        records = importing.read(part.body, kind, part.first_line)
        assert len(records) == part.records
        out += [(r.line, (r.fields or json.loads(r.text or "{}")).get("title")) for r in records]
    return out


def test_ndjson_parts_keep_whole_lines_and_the_file_numbering() -> None:
    text = "\n".join([json.dumps(draft(title=f"T{i}")) if i % 4 else "" for i in range(1, 40)]) + "\n"
    many = list(parts(text, importing.NDJSON, 2_000))
    assert len(many) > 5 and all(len(p.body) <= 2_000 or p.records == 1 for p in many)
    assert lines_as_the_server_reads_them(text, importing.NDJSON, 2_000) == [
        (i, f"T{i}") for i in range(1, 40) if i % 4]


def test_csv_parts_repeat_the_header_and_keep_the_file_numbering() -> None:
    rows = ["title,owner_email"] + [f'"T{i}",o{i}@example.com' if i % 5 else "" for i in range(2, 60)]
    rows.insert(10, '"multi\nline",x@example.com')  # a quoted cell spanning two lines (ends on line 12)
    text = "\n".join(rows) + "\n"
    got = lines_as_the_server_reads_them(text, importing.CSV, 200)
    assert len(list(parts(text, importing.CSV, 200))) > 5
    assert all(p.body.startswith(b"title,owner_email\n") for p in parts(text, importing.CSV, 200))
    want = [(i, f"T{i}") for i in range(2, 11) if i % 5] + [(12, "multi\nline")] + \
        [(i + 2, f"T{i}") for i in range(11, 60) if i % 5]
    assert got == want


def test_the_bar_shows_done_out_of_total() -> None:
    assert bar({"accepted": 5, "rejected": 1}, 12, width=12) == (
        "[######......] 6/12 accepted 5 rejected 1 pending 6")
