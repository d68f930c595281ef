"""The outbox relay: crash safety, replicas, wake-up on commit. Real PostgreSQL and Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator

import pytest
from confluent_kafka import Message
from contract_registry.adapters.db import make_engine
from contract_registry.adapters.orm import OutboxRow
from contract_registry.adapters.relay import OutboxRelay
from contract_registry.entrypoints.app import create_app
from contract_registry.examples import draft, terms
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from mesh_testing import wait_for

from .conftest import Env, ce, make_env, token

W = token()


@pytest.fixture
def quiet(db_url: str, schema: str, kafka_bootstrap: str) -> Env:
    """An API that only commits: no relay, no consumers in-process."""
    return make_env(db_url, schema, kafka_bootstrap, relay_in_process=False, consume_in_process=False)


@pytest.fixture
def api(quiet: Env) -> Iterator[TestClient]:
    with TestClient(create_app(quiet.config)) as c:
        yield c
    if "engine" in quiet.extra:
        quiet.extra.pop("engine").dispose()


def commit_changes(client: TestClient, contracts: int, amendments: int) -> list[str]:
    ids = []
    for _ in range(contracts):
        cid = client.post("/v1/contracts", json=draft(), headers=W).json()["contract_id"]
        assert client.post(f"/v1/contracts/{cid}/activate", headers=W).status_code == 200
        for n in range(amendments):
            resp = client.post(f"/v1/contracts/{cid}/amendments", headers={**W, "If-Match": f'"{n + 1}"'},
                               json={"effective_from": f"2026-{n + 3:02d}-01", "reason": f"a{n}",
                                     "terms": terms(total_value=f"{1000 + n}.00")})
            assert resp.status_code == 200, resp.text
        ids.append(cid)
    return ids


def outbox(env: Env) -> tuple[list[tuple[str, str]], int]:
    """[(ce_id, contract id)] in seq order, and how many are still unpublished."""
    engine = env.extra.get("engine") or env.extra.setdefault("engine", make_engine(env.db_url, env.schema, 1))
    with engine.connect() as conn:
        rows = [(str(i), a) for i, a in conn.execute(select(OutboxRow.id, OutboxRow.aggregate_id)
                                                     .order_by(OutboxRow.seq))]
        pending = conn.scalar(select(func.count()).select_from(OutboxRow)
                              .where(OutboxRow.published_at.is_(None))) or 0
    return rows, pending


def all_records(env: Env) -> list[Message]:
    records = []
    for topic in (env.settings.state_topic, env.settings.events_topic):
        records += env.read(topic, env.count(topic))
    return records


def assert_per_contract_order(env: Env, records: list[Message]) -> None:
    """On each partition, per contract, the first occurrence of every record follows the outbox (commit) order."""
    rows, _ = outbox(env)
    position = {ce_id: i for i, (ce_id, _) in enumerate(rows)}
    by_stream: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    seen: set[str] = set()
    for m in records:  # consume_all keeps partition order
        if ce(m) in seen:
            continue
        seen.add(ce(m))
        by_stream[(m.topic() or "", m.key() or b"")].append(position[ce(m)])
    for stream, order in by_stream.items():
        assert order == sorted(order), f"out of order on {stream}"


def relay_process(env: Env, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "contract_registry.entrypoints.cli", "relay"],
                            env={**os.environ, **env.env_vars(), **extra},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_relay_killed_between_commit_and_publish_loses_nothing(api: TestClient, quiet: Env) -> None:
    commit_changes(api, contracts=25, amendments=2)  # 25 * (1 + 2 + 2 + 2) = 175 records
    rows, pending = outbox(quiet)
    assert len(rows) == pending == 175
    assert quiet.count(quiet.settings.state_topic) == quiet.count(quiet.settings.events_topic) == 0

    first = relay_process(quiet, REGISTRY_RELAY_BATCH_SIZE="2")
    try:
        wait_for(lambda: outbox(quiet)[1] < 175, timeout=60, interval=0.01, message="first relay publishing")
    finally:
        first.send_signal(signal.SIGKILL)  # mid-stream: no chance to mark what it already produced
        first.wait(10)
    left_after_kill = outbox(quiet)[1]
    assert left_after_kill > 0, "the relay finished before it could be killed; nothing was tested"

    second = relay_process(quiet)
    try:
        wait_for(lambda: outbox(quiet)[1] == 0, timeout=60, message="second relay drains the outbox")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0, second.stderr.read() if second.stderr else ""

    records = all_records(quiet)
    ids = [ce(m) for m in records]
    assert set(ids) == {ce_id for ce_id, _ in rows}  # nothing lost
    # A record produced but not marked before the kill may go out twice, always with the same ce_id and bytes.
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for m in records:
        by_id[ce(m)].add(m.value() or b"")
    assert all(len(values) == 1 for values in by_id.values())
    assert len(ids) - len(set(ids)) <= 2  # at most the one unmarked batch of the killed relay
    assert_per_contract_order(quiet, records)


def test_two_relays_never_publish_the_same_row_twice(api: TestClient, quiet: Env) -> None:
    commit_changes(api, contracts=20, amendments=2)  # 140 records
    settings = quiet.settings.model_copy(update={"relay_batch_size": 7})
    relays = [OutboxRelay(quiet.db_url, settings, quiet.config.kafka, name=f"r{i}") for i in range(2)]
    for r in relays:
        r.start()
    try:
        wait_for(lambda: outbox(quiet)[1] == 0, timeout=60, message="relays drain the outbox")
    finally:
        for r in relays:
            r.stop()
            r.engine.dispose()
    rows, _ = outbox(quiet)
    records = all_records(quiet)
    assert len(records) == len(rows) == 140
    assert sorted(ce(m) for m in records) == sorted(ce_id for ce_id, _ in rows)
    assert_per_contract_order(quiet, records)


def test_the_relay_wakes_on_commit_not_on_its_fallback_poll(db_url: str, schema: str, kafka_bootstrap: str) -> None:
    env = make_env(db_url, schema, kafka_bootstrap, relay_fallback_poll_seconds=600.0, consume_in_process=False)
    with TestClient(create_app(env.config)) as client:
        relay: OutboxRelay = client.app.state.runtime["relay"]  # type: ignore[attr-defined]
        wait_for(lambda: relay.alive, timeout=30)
        for _ in range(3):
            client.post("/v1/contracts", json=draft(), headers=W)
            # Well under the 600 s poll: only NOTIFY can have woken the relay.
        messages = env.read(env.settings.state_topic, 3, timeout=60)  # still far below the poll
        assert len(messages) == 3


def test_purge_deletes_only_published_rows_past_retention(api: TestClient, quiet: Env) -> None:
    commit_changes(api, contracts=2, amendments=0)  # 2 * (1 + 2) = 6 rows, unpublished
    relay = OutboxRelay(quiet.db_url, quiet.settings, quiet.config.kafka, name="purge")
    try:
        assert relay.publish_batch() == 6
        commit_changes(api, contracts=1, amendments=0)  # 3 more, unpublished
        engine = make_engine(quiet.db_url, quiet.schema, 1)
        with engine.begin() as conn:
            conn.execute(text("UPDATE outbox SET published_at = now() - interval '4 days' "
                              "WHERE published_at IS NOT NULL"))
            conn.execute(text("INSERT INTO processed_events VALUES ('old', 't', now() - interval '40 days'), "
                              "('new', 't', now())"))
        assert relay.purge() == (6, 1)
        rows, pending = outbox(quiet)
        assert len(rows) == pending == 3  # unpublished rows are never purged
        with engine.connect() as conn:
            assert conn.scalars(text("SELECT event_id FROM processed_events")).all() == ["new"]
        engine.dispose()
    finally:
        relay.stop()
        relay.engine.dispose()
