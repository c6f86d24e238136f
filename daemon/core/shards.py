"""Shards of a stream: paginated ListShards, hash-key ranges, and the lineage resharding creates.

A split closes one parent and opens two children; a merge closes two parents and opens one child.
A closed shard has an `ending_sequence` and gets no new records; its children must start only
after it has been read to its end, so that records of one partition key stay in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_HASH_KEY = 2**128 - 1


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard as ListShards describes it."""

    id: str
    parents: tuple[str, ...]
    """ParentShardId and AdjacentParentShardId (a merge has two), when present."""
    hash_start: int
    hash_end: int
    starting_sequence: str
    ending_sequence: str | None
    """Set once the shard is closed (split or merged)."""

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None

    def owns(self, hash_key: int) -> bool:
        return self.hash_start <= hash_key <= self.hash_end


def shard_from_api(item: dict[str, Any]) -> ShardInfo:
    parents = tuple(p for p in (item.get("ParentShardId"), item.get("AdjacentParentShardId")) if p)
    hashes = item.get("HashKeyRange", {})
    seqs = item.get("SequenceNumberRange", {})
    return ShardInfo(
        id=str(item["ShardId"]),
        parents=parents,
        hash_start=int(hashes.get("StartingHashKey", 0)),
        hash_end=int(hashes.get("EndingHashKey", MAX_HASH_KEY)),
        starting_sequence=str(seqs.get("StartingSequenceNumber", "")),
        ending_sequence=seqs.get("EndingSequenceNumber"),
    )


def stream_args(stream: str) -> dict[str, str]:
    """`StreamARN` for an ARN, else `StreamName` (every Kinesis call takes either)."""
    return {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}


async def list_shards(kinesis: Any, stream: str) -> list[ShardInfo]:
    """Every shard of the stream, open and closed, following NextToken pages."""
    shards: list[ShardInfo] = []
    kwargs: dict[str, Any] = {**stream_args(stream), "MaxResults": 1000}
    while True:
        page = await kinesis.list_shards(**kwargs)
        shards += [shard_from_api(item) for item in page.get("Shards", [])]
        token = page.get("NextToken")
        if not token:
            return shards
        # With NextToken, the stream must not be named again (the token carries it).
        kwargs = {"NextToken": token, "MaxResults": 1000}


def hash_key(partition_key: str, explicit_hash_key: str | None = None) -> int:
    """The 128-bit hash key Kinesis routes by: the explicit one, else MD5 of the partition key."""
    if explicit_hash_key:
        return int(explicit_hash_key)
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def parents_first(shards: Iterable[ShardInfo]) -> list[ShardInfo]:
    """Shards ordered so that every parent comes before its children."""
    by_id = {s.id: s for s in shards}
    done: set[str] = set()
    ordered: list[ShardInfo] = []

    def visit(shard: ShardInfo, path: frozenset[str]) -> None:
        if shard.id in done or shard.id in path:
            return
        for parent in shard.parents:
            if parent in by_id:
                visit(by_id[parent], path | {shard.id})
        done.add(shard.id)
        ordered.append(shard)

    for shard in sorted(by_id.values(), key=lambda s: s.id):
        visit(shard, frozenset())
    return ordered


def shard_for(shards: Iterable[ShardInfo], key: int) -> ShardInfo | None:
    """The open shard whose hash range holds `key`."""
    for shard in shards:
        if not shard.closed and shard.owns(key):
            return shard
    return None
