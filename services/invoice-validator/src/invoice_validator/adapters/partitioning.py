"""Which partition a key lands on, computed the way the producers of the source topics do it.

The validator sends to its internal topics with explicit partitions so that an invoice routed by
contract id lands on the same partition number as that contract's records on the source topics
(and so with the replica owning that contract's state). "crc32" is librdkafka's default
(`consistent_random`, used by every mesh_common producer); "murmur2" is the Java client's default
and librdkafka's `murmur2_random`.
"""

from __future__ import annotations

import zlib

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int, scheme: str = "crc32") -> int:
    if scheme == "murmur2":
        return int(murmur2(key) & 0x7FFFFFFF) % partitions
    if scheme == "crc32":
        return zlib.crc32(key) % partitions
    raise ValueError(f"unknown partitioner {scheme!r} (crc32 or murmur2)")
