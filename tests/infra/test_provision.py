"""Topic provisioning against the real broker."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from mesh_common.provision import Drift, provision
from mesh_testing import create_topics, unique_name


@dataclass(frozen=True)
class Spec:  # the slice of contract_schema.topics.TopicSpec that provisioning reads
    name: str
    partitions: int
    cleanup_policy: str
    retention_ms: int | None


def test_provisioning_is_idempotent(kafka_bootstrap: str) -> None:
    conf = {"bootstrap.servers": kafka_bootstrap}
    specs = [
        Spec(unique_name("prov.state"), 3, "compact", None),
        Spec(unique_name("prov.events"), 2, "delete", 7 * 24 * 3600 * 1000),
    ]

    first = provision(conf, specs)
    second = provision(conf, specs)

    assert sorted(first.created) == sorted(s.name for s in specs)
    assert second.created == []
    assert second.existing == sorted(s.name for s in specs)
    assert second.ok, second.summary()

    admin = AdminClient(conf)
    state = ConfigResource(ConfigResource.Type.TOPIC, specs[0].name)
    configs = admin.describe_configs([state])[state].result()
    assert configs["cleanup.policy"].value == "compact"
    assert len(admin.list_topics(timeout=10).topics[specs[0].name].partitions) == 3


def test_drift_is_reported_not_changed(kafka_bootstrap: str) -> None:
    conf = {"bootstrap.servers": kafka_bootstrap}
    name = unique_name("prov.drift")
    create_topics(kafka_bootstrap, [name], partitions=1, config={"cleanup.policy": "delete", "retention.ms": "1000"})
    spec = Spec(name, 4, "compact", 86_400_000)

    report = provision(conf, [spec])

    assert report.created == []
    assert report.drift == [
        Drift(name, "cleanup.policy", "compact", "delete"),
        Drift(name, "partitions", "4", "1"),
        Drift(name, "retention.ms", "86400000", "1000"),
    ]
    # Reported, not changed.
    assert len(AdminClient(conf).list_topics(timeout=10).topics[name].partitions) == 1


def test_cli_provisions_the_catalog(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    topics = pytest.importorskip("contract_schema.topics")
    from mesh_common.provision import main

    assert main(["--bootstrap", kafka_bootstrap, "--strict"]) == 0
    capsys.readouterr()
    assert main(["--bootstrap", kafka_bootstrap, "--strict"]) == 0  # second run: nothing to do
    assert capsys.readouterr().out.startswith("created 0,")
    present = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    for spec in topics.CATALOG:
        assert spec.name in present and spec.dlq_name in present


def test_replicas_provisioning_the_same_topics_at_once_all_succeed(kafka_bootstrap: str) -> None:
    """Two replicas of a service start together and both create their changelog topics: the one that
    gets "already exists" must wait until the cluster lists the topic, not fail on its metadata."""
    conf = {"bootstrap.servers": kafka_bootstrap}
    for _ in range(3):
        specs = [Spec(unique_name(f"prov.race{i}"), 6, "compact", None) for i in range(8)]
        with ThreadPoolExecutor(4) as pool:
            reports = list(pool.map(provision, [conf] * 4, [specs] * 4))
        assert all(r.ok for r in reports), [r.summary() for r in reports]
        created = [name for r in reports for name in r.created]
        assert sorted(created) == sorted(s.name for s in specs)  # each created once, by one of them
