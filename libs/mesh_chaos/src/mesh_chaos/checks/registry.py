"""Every committed change on clm.contract.events.v1 once, in commit order; the compacted state topic
equals the database."""

from __future__ import annotations

from collections import defaultdict

import psycopg

from contract_schema.contract import ContractSnapshot

from ..harness import Mesh
from ..history import History, Seen
from .report import Report


def registry(r: Report, h: History, mesh: Mesh) -> None:
    with psycopg.connect(mesh.database_url, connect_timeout=10) as conn:
        outbox = conn.execute("select id::text, aggregate_id, seq, published_at is not null from outbox "
                              "where topic = 'clm.contract.events.v1' order by seq").fetchall()
        contracts = conn.execute("select id, status, current_version from contracts").fetchall()
    on_topic: dict[str, list[Seen]] = defaultdict(list)
    for s in h.on("clm.contract.events.v1"):
        on_topic[s.ce_id or ""].append(s)
    r.redelivered["clm.contract.events.v1"] += sum(len(v) - 1 for v in on_topic.values())
    order: dict[str, list[tuple[int, int]]] = defaultdict(list)  # contract -> (outbox seq, first offset)
    for ce_id, contract_id, seq, published in outbox:
        found = on_topic.get(ce_id)
        if not found:
            r.add("registry", "lost", f"outbox change {ce_id} of {contract_id} (seq {seq}, published "
                                     f"{published}) not on clm.contract.events.v1")
            continue
        order[contract_id].append((seq, min(f.offset for f in found)))
    for contract_id, pairs in order.items():
        offsets = [o for _, o in sorted(pairs)]
        if offsets != sorted(offsets):
            r.add("registry", "divergent", f"{contract_id}: changes on the topic out of commit order")
    latest: dict[str, ContractSnapshot] = {}
    for s in h.on("clm.contract.state.v1"):
        if isinstance(s.event, ContractSnapshot):
            latest[s.event.contract_id] = s.event  # one partition per key: offset order
    for contract_id, status, version in contracts:
        snap = latest.get(contract_id)
        if snap is None or snap.current.version != version or snap.status.value != status:
            got = f"v{snap.current.version} {snap.status.value}" if snap else "none"
            r.add("registry", "lost", f"{contract_id}: database v{version} {status}, state topic {got}")
