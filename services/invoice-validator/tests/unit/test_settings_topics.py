"""The changelog topics created before Faust starts are the ones Faust will use."""

from __future__ import annotations

from invoice_validator.entrypoints.worker import TABLES, changelog_topics
from invoice_validator.settings import ValidatorSettings


def test_changelogs_are_named_by_faust_from_the_app_id_compacted_and_copartitioned() -> None:
    settings = ValidatorSettings(app_id="iv", topic_partitions=6)
    topics = changelog_topics(settings)
    assert [t.name for t in topics] == [f"iv-{table}-changelog" for table in TABLES]
    assert {(t.partitions, t.cleanup_policy, t.retention_ms) for t in topics} == {(6, "compact", None)}
