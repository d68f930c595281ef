"""Chapter 6: one trace across the mesh, read from the span files the services write."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from .outcomes import StepFailed, poll
from .stack import repo_root
from .story import Story


class Tracing(Story):
    def one_trace(self) -> str:
        """Spans of this run (services.sh writes them to <run dir>/traces/*.jsonl) sharing one trace id."""
        run_dir = Path(os.environ.get("MESH_RUN_DIR") or repo_root() / ".run")
        # MESH_OTEL_FILE where a service honours it; a service that ignores it prints its spans to stdout,
        # which services.sh sends to its log file.
        files = sorted((run_dir / "traces").glob("*.jsonl")) + sorted((run_dir / "logs").glob("*.log"))
        if not files:
            raise StepFailed(f"no span or log files under {run_dir}")

        def best() -> tuple[str, set[str]] | str:
            by_trace = spans_by_trace(files, since=self.started)
            if not by_trace:
                return "no spans of this run yet"
            trace_id, services = max(by_trace.items(), key=lambda kv: len(kv[1]))
            return (trace_id, services) if len(services) >= 3 else f"widest trace spans {sorted(services)}"

        # Batch span processors export every few seconds: poll until the spans are on disk.
        trace_id, services = poll(best, self.timeout, "a trace id shared by spans of 3 services")
        return f"trace {trace_id} has spans from {len(services)} services: {', '.join(sorted(services))}"


def spans_by_trace(files: Iterable[Path], since: datetime) -> dict[str, set[str]]:
    """trace id -> service names, from JSON-lines span files (ConsoleSpanExporter), spans started after `since`."""
    out: dict[str, set[str]] = {}
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.startswith('{"name"'):  # ConsoleSpanExporter's JSON; log lines are skipped
                    continue
                try:
                    span = json.loads(line)
                    started = datetime.fromisoformat(span["start_time"].replace("Z", "+00:00"))
                    trace_id = span["context"]["trace_id"]
                    service = span["resource"]["attributes"].get("service.name") or path.stem
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a partly written last line, or not a span
                if started >= since:
                    out.setdefault(trace_id, set()).add(service)
    return out
