"""A Faust service started while the broker cannot be reached waits for it (aiokafka alone gives up at once)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import AIOKafkaProducer

from mesh_common.faust_kafka import wait_for_the_broker_at_start
from mesh_testing.ports import free_port


async def _forward(port: int, broker: str) -> asyncio.Server:
    """A plain TCP forwarder on `port` to the broker: the door that opens once the outage is over."""
    host, broker_port = broker.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(broker_port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_a_client_started_while_no_broker_answers_connects_once_it_does(
        kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    wait_for_the_broker_at_start(give_up_after=60)
    port = free_port()
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
    caplog.set_level(logging.WARNING, logger="mesh_common.faust_kafka")
    starting = asyncio.create_task(producer.start())
    for _ in range(400):  # the first refused attempt is logged; then the door opens
        if "no Kafka bootstrap server answers" in caplog.text:
            break
        assert not starting.done(), f"start ended while nothing listened: {starting.exception()!r}"
        await asyncio.sleep(0.05)  # polling the log for the refused attempt
    else:
        pytest.fail("no refused bootstrap attempt was logged")
    server = await _forward(port, kafka_bootstrap)
    try:
        await asyncio.wait_for(starting, 30)
        assert producer.client.cluster.brokers(), "bootstrapped without broker metadata"
    finally:
        await producer.stop()
        server.close()
