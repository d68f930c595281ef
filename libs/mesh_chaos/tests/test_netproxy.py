"""The campaign's network faults really sit between a Kafka client and the broker.

A real broker with an extra listener advertised as a toxiproxy port (what the harness gives each service),
a real toxiproxy-server, a real librdkafka producer: a cut of the route stops the producer's traffic until
the route is back, and a latency toxic slows every round trip. The contrast shows why the extra listener
is needed: a proxy in front of the ordinary listener is bypassed after bootstrap, and cutting it changes
nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from mesh_chaos.netproxy import Route, Toxiproxy
from mesh_testing.ports import free_port
from mesh_testing.servers import KafkaServer
from mesh_testing.waiting import wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaServer, Toxiproxy]]:
    route = Route("client", free_port(), free_port())
    kafka = KafkaServer.start({"VIA_CLIENT": (route.upstream, route.listen)})
    proxy = None
    try:
        proxy = Toxiproxy.start(Path(tmp_path_factory.mktemp("toxiproxy")) / "toxiproxy.log")
        proxy.create(route)
        # The naive route: in front of the ordinary listener, which advertises the broker's own port.
        proxy.create(Route("naive", free_port(), kafka.port))
        yield kafka, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        kafka.stop()


def _topic(kafka: KafkaServer) -> str:
    name = f"netproxy-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


def _producer(address: str) -> Producer:
    # Long timeouts: an undelivered record stays queued and retried across the cut instead of failing.
    return Producer({"bootstrap.servers": address, "message.timeout.ms": 120000, "socket.timeout.ms": 60000,
                     "reconnect.backoff.max.ms": 500, "log_level": 0})


def _values(kafka: KafkaServer, topic: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg.value() or b"")
        elif msg is None and got:
            break
    consumer.close()
    return got


def _send(producer: Producer, topic: str, value: bytes, within: float) -> bool:
    """Produce one record; whether it was delivered within `within` seconds."""
    producer.produce(topic, value=value)
    return producer.flush(within) == 0


def test_the_broker_advertises_the_proxy_to_clients_that_come_through_it(
        routed: tuple[KafkaServer, Toxiproxy]) -> None:
    kafka, proxy = routed
    meta = AdminClient({"bootstrap.servers": proxy.routes["client"].address}).list_topics(timeout=20)
    assert [(b.host, b.port) for b in meta.brokers.values()] == [("127.0.0.1", proxy.routes["client"].listen)]
    direct = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=20)
    assert [b.port for b in direct.brokers.values()] == [kafka.port]


def test_a_cut_of_the_route_stops_the_clients_traffic_until_it_is_back(routed: tuple[KafkaServer, Toxiproxy]) -> None:
    kafka, proxy = routed
    topic = _topic(kafka)
    producer = _producer(proxy.routes["client"].address)
    assert _send(producer, topic, b"before", 30)
    proxy.set_enabled("client", False)
    try:
        assert not _send(producer, topic, b"during", 6), "delivered through a disabled proxy: the route is bypassed"
        assert _values(kafka, topic) == [b"before"]
    finally:
        proxy.clear("client")
    assert producer.flush(60) == 0
    assert wait_for(lambda: _values(kafka, topic) == [b"before", b"during"], timeout=30)


def test_latency_on_the_route_slows_every_round_trip(routed: tuple[KafkaServer, Toxiproxy]) -> None:
    kafka, proxy = routed
    topic = _topic(kafka)
    producer = _producer(proxy.routes["client"].address)
    assert _send(producer, topic, b"warm", 30)
    proxy.add_latency("client", 700, 0)
    try:
        started = time.monotonic()
        assert _send(producer, topic, b"slow", 30)
        slow = time.monotonic() - started
    finally:
        proxy.clear("client")
    started = time.monotonic()
    assert _send(producer, topic, b"fast", 30)
    fast = time.monotonic() - started
    assert slow >= 1.4, f"a produce through 700 ms each way took {slow:.2f} s"  # request + response
    assert fast < 0.7, f"a produce after the toxic was removed took {fast:.2f} s"


def test_a_proxy_on_the_ordinary_listener_is_bypassed_after_bootstrap(routed: tuple[KafkaServer, Toxiproxy]) -> None:
    kafka, proxy = routed
    topic = _topic(kafka)
    producer = _producer(proxy.routes["naive"].address)
    assert _send(producer, topic, b"before", 30)
    proxy.set_enabled("naive", False)
    try:
        assert _send(producer, topic, b"during", 20), "the naive proxy was expected to be bypassed"
    finally:
        proxy.clear("naive")
