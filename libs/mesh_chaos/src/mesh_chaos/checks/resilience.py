"""What the faults leave: every dead letter with a reason, the time from a fault's end to the first new
effect, and the malformed flood (every record in its DLQ, valid traffic as fast as without it)."""

from __future__ import annotations

from contract_schema.invoice import InvoiceValidated

from ..flood import Flood
from ..history import History
from ..nemesis import Fault
from ..workload import Workload
from .report import EFFECT_TOPICS, Report, p99


def dead_letters(r: Report, h: History) -> None:
    for topic in {s.topic for s in h.records if s.topic.endswith(".dlq")}:
        for s in h.on(topic):
            r.dlq[topic] += 1
            if not s.headers.get("dlq_reason"):
                r.add("dead-letters", "broken", f"{topic} offset {s.offset} has no dlq_reason")


def recovery(r: Report, h: History, faults: list[Fault]) -> None:
    for f in faults:
        if f.ended is None:
            continue
        service = f.target.split("#")[0]
        topics = [EFFECT_TOPICS[service]] if service in EFFECT_TOPICS else list(EFFECT_TOPICS.values())
        after = [s.at for t in topics for s in h.on(t) if s.at >= f.ended]
        first = min(after) if after else None
        r.recovery.append({"kind": f.kind, "target": f.target, "error": f.error, **f.detail,
                           "recovery_seconds": None if first is None else round(first - f.ended, 2)})


def flood(r: Report, h: History, w: Workload, fl: Flood | None) -> None:
    if fl is None:
        return
    r.inputs["malformed records"] = len(fl.sent)
    for topic, key in fl.sent:
        if not any(d.key == key and d.dlq_reason for d in h.on(topic + ".dlq")):
            r.add("flood", "lost", f"malformed {key} on {topic}: not in {topic}.dlq with a reason")
    first: dict[str, float] = {}
    for s in h.on("ap.invoice.validated.v1"):
        if isinstance(s.event, InvoiceValidated):
            first.setdefault(s.event.invoice_id, s.at)
    clean: list[float] = []
    flooded: list[float] = []
    for op in w.sent:
        if op.op == "invoice" and not op.data["repost"] and op.data["invoice_id"] in first:
            latency = first[op.data["invoice_id"]] - op.at
            (flooded if fl.started <= op.at <= (fl.ended or op.at) else clean).append(latency)
    r.latency = {"clean_p99_s": p99(clean), "flooded_p99_s": p99(flooded), "clean_n": len(clean),
                 "flooded_n": len(flooded)}
    a, b = r.latency["clean_p99_s"], r.latency["flooded_p99_s"]
    if a is not None and b is not None and len(clean) >= 10 and len(flooded) >= 10 and b > 2 * max(a, 0.05):
        r.add("flood", "broken", f"verdict p99 {b:.2f} s under the flood vs {a:.2f} s clean (> 2x)")
