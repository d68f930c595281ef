from datetime import timedelta

import pytest
from obligation_engine.bootstrap import internal_topics
from obligation_engine.settings import EngineSettings

from mesh_common.faust_kafka import faust_broker, faust_credentials
from mesh_common.settings import KafkaSettings


def test_lead_and_escalation_days_per_kind_come_from_json_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIGATION_LEAD_DAYS", '{"milestone": 21}')
    monkeypatch.setenv("OBLIGATION_ESCALATE_DAYS", '{"payment": 1}')
    cfg = EngineSettings().engine_config()
    assert cfg.lead("milestone", None) == timedelta(days=21)
    assert cfg.lead("milestone", 2) == timedelta(days=2)  # the definition's own lead time wins
    assert cfg.lead("notice", None) == timedelta(days=30)  # defaults kept for the other kinds
    assert cfg.escalate_after("payment") == timedelta(days=1)


def test_kafka_settings_become_faust_broker_urls_and_credentials() -> None:
    kafka = KafkaSettings(bootstrap_servers="a:9092, b:9093")
    assert faust_broker(kafka) == ["kafka://a:9092", "kafka://b:9093"]
    assert faust_credentials(kafka) is None
    sasl = faust_credentials(KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                           sasl_username="u", sasl_password="p"))
    assert sasl.username == "u" and str(sasl.mechanism.value) == "SCRAM-SHA-512" and sasl.ssl_context is not None


def test_internal_topics_are_copartitioned_with_the_inputs() -> None:
    settings = EngineSettings(topic_prefix="x.", app_id="oe", topic_partitions=6)
    assert [(t.name, t.partitions, t.cleanup_policy) for t in internal_topics(settings)] == [
        ("x.oe-ticks", 6, "delete"), ("x.oe-scorecard-parts", 6, "delete"),
        # the tables' changelogs are named by Faust from the app id alone, and stay compacted
        ("oe-contracts-changelog", 6, "compact"), ("oe-counterparties-changelog", 6, "compact")]
