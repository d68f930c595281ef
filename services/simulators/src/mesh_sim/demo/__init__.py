"""`make demo` / `mesh-demo`: the whole contract-mesh story against the local stack, printed as it happens.

Brings the mesh up (`make up`) unless every process already answers, then drives the story through
the real services and the simulators, waits for each outcome by polling (with a timeout, never a
blind sleep), and ends with a summary table. Exits 1 when any expected outcome did not happen.

Every run uses fresh contract ids and e-mail addresses, and starts the shared clock (mesh.clock.v1)
after the latest tick already on the topic, so runs never see each other's outcomes.
"""

from __future__ import annotations

import argparse
import os

from .data import consulting_line, contract_bodies, milestone_line
from .output import table
from .runner import Demo
from .tracing import spans_by_trace

__all__ = ["Demo", "consulting_line", "contract_bodies", "main", "milestone_line", "spans_by_trace", "table"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesh-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("MESH_DEMO_TIMEOUT", "45")),
                        help="seconds to wait for each expected outcome")
    args = parser.parse_args(argv)
    os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", args.bootstrap)
    return Demo(bootstrap=args.bootstrap, timeout=args.timeout).run_story()
