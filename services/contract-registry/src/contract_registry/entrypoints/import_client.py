"""`contract-registry import FILE`: send an NDJSON or CSV file to POST /v1/contracts:import in parts under
the body limit, then follow GET /v1/imports/{id} with a one-line progress bar.

A part holds whole records and says which file line it starts at (`first_line`), so rejections name
lines of the file; a CSV part repeats the header, numbered one line before its first row. While
more than MAX_PENDING records wait on the server, the next part waits too."""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from ..domain.importing import CSV, NDJSON

MAX_PENDING = 20_000
DEFAULT_PART_BYTES = 960 * 1024  # under the registry's 1 MiB body limit, with room for a long last line


@dataclass(frozen=True)
class Part:
    first_line: int
    records: int
    body: bytes


def kind_of(path: Path, given: str | None = None) -> str:
    if given:
        return CSV if given == "csv" else NDJSON
    return CSV if path.suffix.lower() == ".csv" else NDJSON


def parts(text: str, kind: str, part_bytes: int = DEFAULT_PART_BYTES) -> Iterator[Part]:
    """Whole records, at most `part_bytes` a part (a single larger record is a part of its own)."""
    yield from (_csv_parts if kind == CSV else _ndjson_parts)(text, part_bytes)


def _ndjson_parts(text: str, part_bytes: int) -> Iterator[Part]:
    lines: list[str] = []
    size = records = 0
    start = 1
    for n, line in enumerate(text.split("\n"), 1):
        encoded = len(line.encode()) + 1
        if lines and size + encoded > part_bytes:
            yield Part(start, records, "\n".join(lines).encode())
            lines, size, records, start = [], 0, 0, n
        lines.append(line)
        size += encoded
        records += bool(line.strip())
    if records:
        yield Part(start, records, "\n".join(lines).encode())


def _csv_parts(text: str, part_bytes: int) -> Iterator[Part]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return
    head = _row(header)
    rows: list[str] = []  # blank rows kept (the server skips them) so that line numbers stay the file's
    size = records = 0
    start = last = 1  # the file line the part's header stands for, and where the last row ended
    for row in reader:
        blank = not any(cell.strip() for cell in row)
        encoded = "\n" if blank else _row(row)
        if records and not blank and size + len(encoded.encode()) > part_bytes:
            yield Part(start, records, (head + "".join(rows)).encode())
            rows, size, records, start = [], 0, 0, last
        rows.append(encoded)
        size += len(encoded.encode())
        records += not blank
        last = reader.line_num
    if records:
        yield Part(start, records, (head + "".join(rows)).encode())


def _row(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def bar(state: dict[str, Any], total: int, width: int = 30) -> str:
    done = state["accepted"] + state["rejected"]
    filled = int(width * done / total) if total else width
    return (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"accepted {state['accepted']} rejected {state['rejected']} pending {total - done}")


def run(path: Path, *, url: str, token: str, kind: str | None = None, part_bytes: int = DEFAULT_PART_BYTES,
        out: TextIO = sys.stderr, poll_seconds: float = 0.5) -> int:
    """Import the file; 0 when every record was accepted, 1 when some were rejected, 2 on a refused request."""
    media = kind_of(path, kind)
    all_parts = list(parts(path.read_text(encoding="utf-8"), media, part_bytes))
    total = sum(p.records for p in all_parts)
    tty = out.isatty()
    last_print = 0.0

    def show(state: dict[str, Any], final: bool = False) -> None:
        nonlocal last_print
        if final or tty or time.monotonic() - last_print > 5:
            out.write(("\r" if tty else "") + bar(state, total) + ("\n" if final or not tty else ""))
            out.flush()
            last_print = time.monotonic()

    headers = {"Authorization": f"Bearer {token}", "Content-Type": media}
    import_id: str | None = None
    state: dict[str, Any] = {"accepted": 0, "rejected": 0, "pending": 0}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        for part in all_parts:
            while state["pending"] > MAX_PENDING:  # back-pressure: the server holds pending records in memory
                time.sleep(poll_seconds)
                state = _status(http, import_id)
                show(state)
            params: dict[str, Any] = {"first_line": part.first_line}
            if import_id:
                params["import_id"] = import_id
            resp = http.post("/v1/contracts:import", content=part.body, params=params)
            if resp.status_code != 202:
                out.write(f"\nimport refused: {resp.status_code} {resp.text[:500]}\n")
                return 2
            state = resp.json()
            import_id = state["import_id"]
            show(state)
        while state["pending"] > 0:
            time.sleep(poll_seconds)
            state = _status(http, import_id)
            show(state)
    show(state, final=True)
    out.write(f"import {import_id}: created {state['created']}, already there {state['existing']}, "
              f"rejected {state['rejected']}\n")
    for rejection in state["rejections"]:
        for item in rejection["detail"]:
            out.write(f"  line {rejection['line']}: {item['field']}: {item['msg']}\n")
    if state["rejected"] > len(state["rejections"]):
        out.write(f"  ... and {state['rejected'] - len(state['rejections'])} more (GET /v1/imports/{import_id})\n")
    return 1 if state["rejected"] else 0


def _status(http: httpx.Client, import_id: str | None) -> dict[str, Any]:
    resp = http.get(f"/v1/imports/{import_id}")
    resp.raise_for_status()
    state: dict[str, Any] = resp.json()
    return state
