"""`python -m mesh_chaos` / `make chaos`: a seeded fault campaign over the whole mesh, checked.

Prints the table and the path of the JSON report; exits 1 on any violation (the history, logs and
report of a failed run are kept), 2 on bad options.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from .campaign import Options, run
from .nemesis import ALL_FAULTS, expand


def _pair(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    return float(lo), float(hi or lo)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mesh_chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=1200, help="seconds of load and faults (default 1200)")
    p.add_argument("--rate", type=float, default=2.0, help="workload operations per second (default 2)")
    p.add_argument("--faults", default=ALL_FAULTS,
                   help=f"comma-separated families or kinds (default {ALL_FAULTS}; '' for a fault-free run). "
                   "kill[:<service>]: SIGKILL one process, restart after 0.5-6 s; broker (broker-restart, "
                   "broker-kill); pg (pg-restart, pg-pause); partner[:<erp|crm|smtp>:<unavailable|throttled|hang|"
                   "refuse>]: a simulator outage; net (net-delay, net-cut, each optionally :<service>): 200-1000 ms "
                   "latency with jitter, or the connection cut, between a service and the broker through its "
                   "toxiproxy route for an --outage window; clock (clock-leap): the topic clock jumps 90-200 days "
                   "ahead once")
    p.add_argument("--replicas", type=int, default=2,
                   help="replicas of invoice-validator (and of the other replicable services with --all-replicas)")
    p.add_argument("--all-replicas", action="store_true",
                   help="run obligation-engine, renewal-sync and notifier with --replicas too")
    p.add_argument("--quiesce", type=float, default=240, help="bound on settling after the faults (s)")
    p.add_argument("--interval", type=_pair, default=(4.0, 12.0), help="seconds between fault starts: lo,hi")
    p.add_argument("--outage", type=_pair, default=(5.0, 30.0),
                   help="partner outage and network fault window: lo,hi seconds")
    p.add_argument("--pause", type=_pair, default=(10.0, 30.0), help="PostgreSQL pause: lo,hi seconds")
    p.add_argument("--flood", type=int, default=0,
                   help="malformed records spread over every inbound topic in the second half of the run")
    p.add_argument("--code", metavar="REF", help="run the services from this git ref (e.g. HEAD) instead of the "
                   "working tree, so edits made during the run do not reach restarted processes")
    p.add_argument("--workdir", type=Path, help="where history, logs and report go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the history of a passing run too")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    # SIGTERM (and SIGINT in a background job, where it is ignored) must still stop every process started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        expand(args.faults)
    except ValueError as exc:
        p.error(str(exc))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    replicas = {"invoice-validator": args.replicas}
    if args.all_replicas:
        replicas |= {s: args.replicas for s in ("obligation-engine", "renewal-sync", "notifier")}
    outcome = run(Options(seed=args.seed, duration=args.duration, rate=args.rate, faults=args.faults,
                          replicas=replicas, quiesce=args.quiesce, interval=args.interval, outage=args.outage,
                          pause=args.pause, workdir=args.workdir, keep=args.keep,
                          flood=args.flood, code=args.code))
    print(outcome.table)
    print(json.dumps({k: outcome.report[k] for k in ("lost", "duplicated", "divergent", "broken")}))
    if outcome.ok and not args.keep:
        print("PASS (history removed; --keep to keep it)")
    else:
        print(f"{'PASS' if outcome.ok else 'FAIL'}: report, history and logs in {outcome.workdir}")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
