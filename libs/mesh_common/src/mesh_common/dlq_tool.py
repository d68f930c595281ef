"""Inspect a dead-letter topic and replay its records after a fix.

    mesh-dlq inspect ap.invoice.received.v1            # what failed and why
    mesh-dlq replay ap.invoice.received.v1 [--offset N] [--dry-run]

Replay re-publishes each dead letter's original key, bytes and headers to the topic it
came from. It reads the DLQ with a consumer group of its own ("mesh-dlq-replay.<topic>")
and commits after each record, so running it twice does not replay a record twice.
Consumers deduplicate on ce_id, so a replayed record that had in fact succeeded is harmless.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from contract_schema.topics import DLQ_SUFFIX

from .dlq import original_headers, read_dead_letter
from .settings import KafkaSettings


def _dlq_name(topic: str) -> str:
    return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX


def _read(consumer: Consumer, idle_timeout: float) -> Iterator[Message]:
    """Messages until the topic has been idle for `idle_timeout` seconds."""
    while True:
        msg = consumer.poll(idle_timeout)
        if msg is None:
            return
        if msg.error() is None:
            yield msg


def inspect(kafka: KafkaSettings, topic: str, *, limit: int = 100, idle_timeout: float = 3.0) -> list[str]:
    dlq = _dlq_name(topic)
    consumer = Consumer(kafka.consumer("mesh-dlq-inspect"))
    lines = []
    try:
        meta = consumer.list_topics(dlq, timeout=10).topics.get(dlq)
        if meta is None or meta.error is not None:
            return [f"{dlq}: no such topic"]
        consumer.assign([TopicPartition(dlq, p, OFFSET_BEGINNING) for p in meta.partitions])
        for msg in _read(consumer, idle_timeout):
            letter = read_dead_letter(msg.headers())
            lines.append(f"{dlq}@{msg.offset()} from {letter.source_topic}[{letter.source_partition}]@"
                         f"{letter.source_offset} by {letter.service} at {letter.time}: "
                         f"{letter.error_type}: {letter.reason}")
            if len(lines) >= limit:
                break
    finally:
        consumer.close()
    return lines


def replay(kafka: KafkaSettings, topic: str, *, dry_run: bool = False, idle_timeout: float = 3.0) -> int:
    """Re-publish dead letters to their source topic; returns how many were replayed."""
    dlq = _dlq_name(topic)
    consumer = Consumer(kafka.consumer(f"mesh-dlq-replay.{dlq}"))
    producer = Producer(kafka.producer())
    count = 0
    try:
        consumer.subscribe([dlq])
        for msg in _read(consumer, idle_timeout):
            letter = read_dead_letter(msg.headers())
            target = letter.source_topic or dlq[: -len(DLQ_SUFFIX)]
            count += 1
            if dry_run:
                continue
            producer.produce(target, key=msg.key(), value=msg.value(),
                             headers=[(k, v) for k, v in original_headers(msg.headers())])
            if producer.flush(30) != 0:
                raise RuntimeError(f"could not re-publish {dlq}@{msg.offset()} to {target}")
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesh-dlq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_inspect = sub.add_parser("inspect", help="list dead letters with their reasons")
    p_inspect.add_argument("topic")
    p_inspect.add_argument("--limit", type=int, default=100)
    p_replay = sub.add_parser("replay", help="re-publish dead letters to their source topic")
    p_replay.add_argument("topic")
    p_replay.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    kafka = KafkaSettings()
    if args.command == "inspect":
        for line in inspect(kafka, args.topic, limit=args.limit):
            print(line)
        return 0
    replayed = replay(kafka, args.topic, dry_run=args.dry_run)
    print(f"{'would replay' if args.dry_run else 'replayed'} {replayed} record(s) from {_dlq_name(args.topic)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
