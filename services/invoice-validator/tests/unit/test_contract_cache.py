"""The parsed-contract cache over table-like mappings."""

from __future__ import annotations

from typing import Any

from invoice_validator import samples as s
from invoice_validator.adapters.contracts import ContractCache, table_value

from mesh_common.faust_kafka import partition_for


def test_cache_parses_once_and_follows_new_snapshots() -> None:
    c1 = s.contract("C-1", vendor="V-1")
    contracts: dict[str, Any] = {"C-1": table_value(c1)}
    vendors: dict[str, Any] = {"V-1": {"C-1": contracts["C-1"]["snapshot"]}}
    cache = ContractCache(contracts, vendors)
    first = cache.get("C-1")
    assert first == c1 and cache.get("C-1") is first  # parsed once
    assert cache.for_vendor("V-1") == [c1] and cache.for_vendor("V-404") == []
    amended = s.contract("C-1", vendor="V-1", title="amended")
    contracts["C-1"] = table_value(amended)
    assert cache.get("C-1") == amended
    cache.invalidate()
    assert cache.get("C-404") is None


def test_partitions_match_librdkafka_default_and_java_murmur2() -> None:
    # librdkafka consistent_random == CRC-32 of the key; murmur2 as the Java client computes it.
    assert [partition_for(f"C-{i}".encode(), 6) for i in range(5)] == [4, 0, 2, 0, 3]
    # Java: Utils.murmur2("21".getBytes()) == -973932308 (Kafka's own test vector); toPositive, then mod.
    assert partition_for(b"21", 1000, "murmur2") == (-973932308 & 0x7FFFFFFF) % 1000


def test_kafka_security_settings_become_faust_credentials() -> None:
    import faust

    from mesh_common.faust_kafka import faust_credentials
    from mesh_common.settings import KafkaSettings

    assert faust_credentials(KafkaSettings()) is None
    sasl = faust_credentials(KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                           sasl_username="u", sasl_password="p"))
    assert isinstance(sasl, faust.SASLCredentials) and sasl.username == "u" and sasl.ssl_context is not None
    assert isinstance(faust_credentials(KafkaSettings(security_protocol="SSL")), faust.SSLCredentials)
