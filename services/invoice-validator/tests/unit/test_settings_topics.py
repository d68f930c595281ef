"""The changelog topics created before Faust starts are the ones Faust will use."""

from __future__ import annotations

from invoice_validator.adapters.faust_app import INTERNAL_TOPICS, TABLES, changelog_topics
from invoice_validator.settings import ValidatorSettings


def test_changelogs_are_named_by_faust_from_the_app_id_compacted_and_copartitioned() -> None:
    settings = ValidatorSettings(app_id="iv", topic_partitions=6)
    topics = changelog_topics(settings)[: len(TABLES)]
    assert [t.name for t in topics] == [f"iv-{table}-changelog" for table in TABLES]
    assert {(t.partitions, t.cleanup_policy, t.retention_ms) for t in topics} == {(6, "compact", None)}


def test_the_internal_repartition_topics_exist_before_the_agents_subscribe() -> None:
    settings = ValidatorSettings(app_id="iv", topic_partitions=6)
    internal = changelog_topics(settings)[len(TABLES):]
    assert [t.name for t in internal] == [f"iv-{name}" for name in INTERNAL_TOPICS]
    assert [t.name for t in internal] == ["iv-park-expiry", "iv-vendor-directory", "iv-invoices-by-contract"]
    assert {(t.partitions, t.cleanup_policy) for t in internal} == {(6, "delete")}
