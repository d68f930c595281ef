"""The mesh's Kafka settings spelled for Faust (aiokafka), and where a key's records sit.

Both Faust services (invoice-validator, obligation-engine) take the same KAFKA_* settings as the
confluent-kafka services. Records they send to their own topics are placed explicitly, so that a
key's records sit in the same partition number on every topic whoever wrote them: "crc32" is
librdkafka's default (`consistent_random`, used by every mesh_common producer), "murmur2" the Java
client's default and librdkafka's `murmur2_random`.
"""

from __future__ import annotations

import logging
import ssl
import zlib
from typing import Any

import faust
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import murmur2
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from .settings import KafkaSettings

log = logging.getLogger(__name__)


def wait_for_the_broker_at_start(give_up_after: float = 600.0) -> None:
    """Make every aiokafka client (Faust's producer, consumer and admin calls) wait for the broker when
    none of the bootstrap servers answers, instead of failing at once: aiokafka tries each host once and
    raises, which stops a Faust worker that starts during a broker restart or a network cut (librdkafka,
    used by the other services, keeps trying). Idempotent; the services call it before building the app."""
    if getattr(AIOKafkaClient.bootstrap, "waits_for_the_broker", False):
        return
    bootstrap_once = AIOKafkaClient.bootstrap

    async def bootstrap(self: AIOKafkaClient) -> None:
        retrying = AsyncRetrying(retry=retry_if_exception_type(KafkaConnectionError), reraise=True,
                                 wait=wait_exponential(multiplier=0.5, max=5.0),
                                 stop=stop_after_delay(give_up_after),
                                 before_sleep=lambda state: log.warning(
                                     "no Kafka bootstrap server answers (%s); trying again in %.1f s",
                                     state.outcome and state.outcome.exception(), state.upcoming_sleep))
        async for attempt in retrying:
            with attempt:
                await bootstrap_once(self)

    bootstrap.waits_for_the_broker = True  # type: ignore[attr-defined]
    AIOKafkaClient.bootstrap = bootstrap


def faust_broker(kafka: KafkaSettings) -> list[str]:
    return [f"kafka://{host.strip()}" for host in kafka.bootstrap_servers.split(",") if host.strip()]


def faust_credentials(kafka: KafkaSettings) -> Any:
    """The KAFKA_* security settings for aiokafka (None for PLAINTEXT)."""
    protocol = kafka.security_protocol
    context = ssl.create_default_context(cafile=kafka.ssl_ca_location) if protocol.endswith("SSL") else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=kafka.sasl_username, password=kafka.sasl_password,
                                     mechanism=kafka.sasl_mechanism or "PLAIN", ssl_context=context)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return None


def partition_for(key: bytes, partitions: int, scheme: str = "crc32") -> int:
    if scheme == "murmur2":
        return int(murmur2(key) & 0x7FFFFFFF) % partitions
    if scheme == "crc32":
        return zlib.crc32(key) % partitions
    raise ValueError(f"unknown partitioner {scheme!r} (crc32 or murmur2)")
