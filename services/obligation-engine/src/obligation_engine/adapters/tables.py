"""Faust table writes that cannot run ahead of Kafka.

`table[key] = value` only queues the changelog record in Faust's producer buffer, and Faust's
commit flushes that buffer with a 0.1 s patience per record (faust-streaming 0.15, `ProducerBuffer.
flush_atmost`) before committing the input offsets anyway: under load a killed worker could have
its input offset committed while the state change it made was never in the changelog. The input is
then not redelivered and the change is gone (a snapshot's schedule, a completion, a parked record).
`put_acked` waits for the broker's ack of the changelog record before the local store takes the
value, and the agents call it before they yield, so the input's offset can only be committed after
its state is durable, and the local store never holds what the changelog lacks.
"""

from __future__ import annotations

from typing import Any


async def put_acked(table: Any, key: str, value: bytes) -> None:
    """`table[key] = value`, returning once the changelog record is acknowledged (raises if it is not)."""
    fut = table.send_changelog(table.partition_for_key(key), key, value)
    await fut  # a FutureMessage: resolved by the producer's delivery callback (broker ack, acks=all)
    table.data[key] = value
