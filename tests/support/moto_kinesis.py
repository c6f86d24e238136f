"""A moto server whose Kinesis resharding behaves as AWS documents it (for the reshard tests).

moto 5 gets resharding wrong in ways that make a consumer's job impossible to test:
- records written after SplitShard/MergeShards go to the *closed* parent (its hash-key lookup
  ignores whether a shard is open), so children never receive anything;
- SplitShard re-puts the parent's records (into the parent again), MergeShards copies both
  parents' records into the child (so the child repeats them);
- GetRecords never returns a null NextShardIterator, even at the end of a closed shard.
Here, as in AWS: a reshard closes the parent(s) and leaves their records where they are, new
records go to open shards only, and reading a closed shard past its last record returns no
iterator (SHARD_END). Everything else is moto's own, in a real server process.

Run as `python -m tests.support.moto_kinesis HOST PORT` (exits when stdin closes).
"""

from __future__ import annotations

import sys
from operator import attrgetter
from typing import Any

from moto.kinesis import models
from moto.kinesis.exceptions import InvalidArgumentError

_original_get_records = models.KinesisBackend.get_records


def get_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
    if explicit_hash_key:
        key = int(explicit_hash_key)
    else:
        key = int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
            return shard
    return None


def _next_id(self: Any) -> int:
    return int(max(self.shards.values(), key=attrgetter("_shard_id"))._shard_id) + 1


def split_shard(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
    shard = self.shards[shard_to_split]
    new_start = int(new_starting_hash_key)
    if not shard.is_open:
        raise InvalidArgumentError(f"Shard {shard_to_split} has already been merged or split")
    if not shard.starting_hash < new_start <= shard.ending_hash:
        raise InvalidArgumentError(f"NewStartingHashKey {new_start} outside the shard")
    first = _next_id(self)
    for index, (start, end) in enumerate(
        ((shard.starting_hash, new_start - 1), (new_start, shard.ending_hash))
    ):
        child = models.Shard(first + index, start, end, parent=shard.shard_id)
        self.shards[child.shard_id] = child
    shard.is_open = False


def merge_shards(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
    one, two = self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]
    low, high = sorted((one, two), key=attrgetter("starting_hash"))
    if low.ending_hash + 1 != high.starting_hash or not (one.is_open and two.is_open):
        raise InvalidArgumentError(f"{adjacent_shard_to_merge} is not an open adjacent shard")
    child = models.Shard(
        _next_id(self),
        low.starting_hash,
        high.ending_hash,
        parent=one.shard_id,
        adjacent_parent=two.shard_id,
    )
    self.shards[child.shard_id] = child
    one.is_open = two.is_open = False


def get_records(self: Any, stream_arn: Any, shard_iterator: str, limit: Any) -> Any:
    next_iterator, records, behind = _original_get_records(self, stream_arn, shard_iterator, limit)
    stream_name, shard_id, last = models.decompose_shard_iterator(next_iterator)
    shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(shard_id)
    if not shard.is_open and int(last) >= shard.get_max_sequence_number():
        next_iterator = None  # SHARD_END
    return next_iterator, records, behind


def patch() -> None:
    models.Stream.get_shard_for_key = get_shard_for_key
    models.Stream.split_shard = split_shard
    models.Stream.merge_shards = merge_shards
    models.KinesisBackend.get_records = get_records


if __name__ == "__main__":
    patch()
    from daemon.core.local_aws import main

    main(sys.argv[1:])
