"""Which partition a key goes to, the way the rest of the mesh's producers place it.

The mesh's producers are confluent-kafka with librdkafka's default partitioner
(consistent_random: CRC32 of the key modulo the partition count). aiokafka, under Faust,
would use murmur2; records we send are placed explicitly so a contract's records sit in
the same partition number on every topic, whoever wrote them.
"""

from __future__ import annotations

import zlib


def partition_for(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions
