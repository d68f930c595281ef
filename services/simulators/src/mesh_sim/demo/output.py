"""The terminal output: narration lines, colour when stdout is a terminal, one line per event, the table."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
from collections.abc import Iterable

from contract_schema.base import Event
from contract_schema.invoice import InvoiceValidated
from contract_schema.renewal import RenewalOpportunity

COLOUR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
_print_lock = threading.Lock()


def styled(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def say(text: str = "") -> None:
    with _print_lock:
        print(text, flush=True)


def note(text: str) -> None:
    say(f"    {text}")


def describe(event: Event) -> str:
    """One line about an event, for the narration."""
    name = type(event).__name__
    d = event.model_dump(mode="json")
    if isinstance(event, InvoiceValidated):
        reasons = ",".join(event.reason_codes or sorted({c for line in event.lines for c in line.reason_codes}))
        return f"{name} {event.invoice_number} -> {event.status.value} [{reasons}]"
    if isinstance(event, RenewalOpportunity):
        return f"{name} {event.contract_id} stage {event.stage.value} ({event.status.value})"
    if "alert_type" in d:
        return f"Alert {d['tier']} {d['alert_type']}: {d['title']}"
    if "kind" in d and "alert_id" in d:
        return f"{name} {d['kind']} via {d.get('channel')} to {d.get('recipient')}"
    bits = [str(d[k]) for k in ("invoice_number", "contract_id", "contract_ref", "obligation_id", "status",
                                "decision", "stage") if d.get(k)]
    return f"{name} {' '.join(bits)}"


def table(rows: list[tuple[str, ...]], widths: Iterable[int] = (3, 32, 40, 70, 6)) -> str:
    """A plain-text table; long cells wrap inside their column."""
    w = list(widths)
    out = []
    for n, row in enumerate(rows):
        cells = [textwrap.wrap(c, width) or [""] for c, width in zip(row, w, strict=True)]
        for i in range(max(len(c) for c in cells)):
            out.append(" | ".join((c[i] if i < len(c) else "").ljust(width) for c, width in zip(cells, w, strict=True)))
        if n == 0:
            out.append("-+-".join("-" * width for width in w))
    return "\n".join(out)
