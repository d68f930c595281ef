"""Faust wiring that is not processing: the app and its raw topics, the tables' changelog topics, the ids
derived from other ids."""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any

import faust

from contract_schema.topics import TopicSpec
from mesh_common.faust_kafka import faust_broker, faust_credentials, wait_for_the_broker_at_start
from mesh_common.settings import KafkaSettings

from ..settings import ValidatorSettings

log = logging.getLogger(__name__)

# Namespace for ids derived from other ids (verdict and alert ce_ids, HTTP invoice ids).
ID_NAMESPACE = uuid.UUID("5b0e3c1a-7f1e-4c57-9a55-3d1f0b6f2a10")

# Faust tables; each one's changelog is <app id>-<table>-changelog. Cumulative billing and the
# duplicate keys are not tables of their own: they are derived from `verdicts` (domain/ledger.py).
TABLES = ("contracts", "obligations", "verdicts", "parked", "vendors")
# The worker's own topics (<app id>-<name>): parked invoices' expiry, contracts announced to their
# vendor's partition, and invoices matched by vendor sent on to their contract's partition.
INTERNAL_TOPICS = ("park-expiry", "vendor-directory", "invoices-by-contract")


def derived_id(kind: str, source_id: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}:{source_id}"))


def changelog_topics(settings: ValidatorSettings) -> list[TopicSpec]:
    """The tables' changelogs (compacted, never time-retained) and the internal topics, created before
    Faust starts: when Faust creates them itself on a new cluster its metadata can still say 0 partitions when the first
    record arrives, and every record then fails with PartitionsMismatch until a restart."""
    return [TopicSpec(f"{settings.app_id}-{table}-changelog", "table key", settings.topic_partitions, "compact",
                      None, (), f"invoice-validator table changelog: {table}") for table in TABLES] + [
        # Created up front for the same reason, and one more: an agent that subscribes to a topic
        # Faust has not created yet logs "Ignoring missing topic" and never reads it until the next
        # rebalance, so with a single replica no vendor-keyed invoice ever met its contract.
        TopicSpec(f"{settings.app_id}-{name}", "record key", settings.topic_partitions, "delete",
                  None, (), f"invoice-validator internal topic: {name}") for name in INTERNAL_TOPICS]


def build_app(settings: ValidatorSettings, kafka: KafkaSettings) -> tuple[faust.App, Path]:
    """The Faust app, and the directory of its local data."""
    wait_for_the_broker_at_start()  # started during a broker outage: wait, do not exit
    data_dir = settings.data_dir or tempfile.mkdtemp(prefix=f"{settings.app_id}-")
    store = settings.store
    if store.startswith("rocksdb") and importlib.util.find_spec("rocksdict") is None:
        # Without the binding Faust cannot open RocksDB; the changelogs hold the state either way.
        log.warning("rocksdict is not installed: using the in-memory table store")
        store = "memory://"
    app = faust.App(
        settings.app_id,
        broker=faust_broker(kafka),
        broker_credentials=faust_credentials(kafka),
        store=store,
        datadir=Path(data_dir),
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        # Tables keep JSON; every topic of the mesh is declared raw (`raw_topic`) and decoded by contract_schema.
        key_serializer="json",
        value_serializer="json",
        stream_wait_empty=False,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        # Verdicts and table records are ~10 KB: the 16 KB default batch held one record each, so the
        # producer (one in-flight request per broker) capped throughput. Batch them and compress.
        producer_max_batch_size=1_048_576,
        producer_linger=settings.producer_linger_seconds,
        producer_compression_type="lz4",
    )
    return app, Path(data_dir)


def raw_topic(app: faust.App, name: str, partitions: int | None = None, internal: bool = False) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions, internal=internal)
