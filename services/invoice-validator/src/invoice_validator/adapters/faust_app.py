"""Faust wiring that is not processing: the tables' changelog topics, the ids derived from other ids."""

from __future__ import annotations

import uuid

from contract_schema.topics import TopicSpec

from ..settings import ValidatorSettings

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
