"""Create the catalog's topics on a Kafka cluster; report, never change, drifted ones.

Idempotent: topics that exist are left alone. Partition counts and the configs the
catalog pins (cleanup.policy, retention.ms) are compared and differences reported,
because changing them in place (more partitions re-keys a topic; a cleanup policy
change can drop data) is a decision for a person, not for a start-up script.

    python -m mesh_common.provision [--strict]   # bootstrap from KAFKA_BOOTSTRAP_SERVERS
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, TopicMetadata
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class TopicLike(Protocol):
    """What provisioning needs of a topic; `contract_schema.topics.TopicSpec` fits."""

    @property
    def name(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def cleanup_policy(self) -> str: ...
    @property
    def retention_ms(self) -> int | None: ...


@dataclass(frozen=True)
class Drift:
    topic: str
    setting: str  # "partitions", "cleanup.policy" or "retention.ms"
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual}, catalog says {self.expected}"


@dataclass
class ProvisionReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drift

    def summary(self) -> str:
        lines = [f"created {len(self.created)}, already there {len(self.existing)}, drifted {len(self.drift)}"]
        lines += [f"  created {name}" for name in self.created]
        lines += [f"  DRIFT {d}" for d in self.drift]
        return "\n".join(lines)


def wanted_configs(topic: TopicLike) -> dict[str, str]:
    configs = {"cleanup.policy": topic.cleanup_policy}
    if topic.retention_ms is not None:  # None: leave the broker default
        configs["retention.ms"] = str(topic.retention_ms)
    return configs


def _same(setting: str, expected: str, actual: str) -> bool:
    if setting == "cleanup.policy":  # "compact,delete" == "delete,compact"
        return {p.strip() for p in expected.split(",")} == {p.strip() for p in actual.split(",")}
    return expected == actual


def provision(
    bootstrap_conf: Mapping[str, str],
    topics: Iterable[TopicLike],
    *,
    replication_factor: int = -1,
    timeout: float = 30.0,
) -> ProvisionReport:
    """Create missing `topics`, report drift of existing ones.

    `bootstrap_conf` is a librdkafka config (at least `bootstrap.servers`).
    `replication_factor=-1` takes the broker's default.replication.factor.
    """
    specs = {t.name: t for t in topics}
    admin = AdminClient(dict(bootstrap_conf))
    report = ProvisionReport()
    present = admin.list_topics(timeout=timeout).topics

    missing = [name for name in specs if name not in present]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=specs[name].partitions,
                    replication_factor=replication_factor,
                    config=wanted_configs(specs[name]),
                )
                for name in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                report.created.append(name)
            except KafkaException as exc:
                # Someone else created it between our listing and our request.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                missing.remove(name)

    to_check = sorted(name for name in specs if name not in report.created)
    report.existing = to_check
    if not to_check:
        return report

    metadata = _listing(admin, to_check, timeout)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in to_check]
    described = admin.describe_configs(resources, request_timeout=timeout)
    for resource, future in described.items():
        name = resource.name
        spec = specs[name]
        actual_partitions = len(metadata[name].partitions)
        if actual_partitions != spec.partitions:
            report.drift.append(Drift(name, "partitions", str(spec.partitions), str(actual_partitions)))
        entries = future.result()
        for setting, expected in wanted_configs(spec).items():
            entry = entries.get(setting)
            actual = "" if entry is None or entry.value is None else str(entry.value)
            if not _same(setting, expected, actual):
                report.drift.append(Drift(name, setting, expected, actual))
    report.drift.sort(key=lambda d: (d.topic, d.setting))
    return report


def _listing(admin: AdminClient, names: list[str], timeout: float) -> Mapping[str, TopicMetadata]:
    """The cluster's topic metadata once it lists every one of `names`. A topic another process created
    a moment ago (replicas provisioning at the same start) answers "already exists" before the broker
    that answers the listing knows it."""
    def listing() -> Mapping[str, TopicMetadata]:
        return admin.list_topics(timeout=timeout).topics

    def incomplete(topics: Mapping[str, TopicMetadata]) -> bool:
        return not set(names) <= set(topics)

    try:
        topics: Mapping[str, TopicMetadata] = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.2),
                                                retry=retry_if_result(incomplete))(listing)
    except RetryError as exc:
        missing = set(names) - set(exc.last_attempt.result())
        raise RuntimeError(f"topics not listed by the cluster after {timeout:.0f} s: {sorted(missing)}") from exc
    return topics


def bootstrap_from_env() -> dict[str, str]:
    """The admin client config from KAFKA_* variables, TLS and SASL included (see KafkaSettings)."""
    from .settings import KafkaSettings

    conf = KafkaSettings().admin()
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        conf["bootstrap.servers"] = DEFAULT_BOOTSTRAP
    return {k: str(v) for k, v in conf.items()}


def catalog_topics() -> tuple[TopicLike, ...]:
    """The catalog topics plus their dead-letter topics."""
    from contract_schema import topics  # imported late: only the CLI needs the catalog

    return tuple(topics.all_topics())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh_common.provision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any topic drifted from the catalog")
    args = parser.parse_args(argv)
    conf = bootstrap_from_env()
    if args.bootstrap:
        conf["bootstrap.servers"] = args.bootstrap
    report = provision(conf, catalog_topics())
    print(report.summary())
    return 1 if args.strict and not report.ok else 0


if __name__ == "__main__":
    sys.exit(main())
