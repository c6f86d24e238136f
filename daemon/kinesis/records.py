"""From what GetRecords returns to what handlers get: de-aggregation, hash-range filtering and
decoding, done once per record.

Each Kinesis record becomes one or more `Unit`s: the handler `Record` plus where it sits in the
shard (sequence number, sub-sequence for KPL-aggregated records), which checkpoints need.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from daemon.core.shards import ShardInfo, hash_key
from daemon.handlers.base import Record
from daemon.handlers.decode import Decoder, decode_payload
from daemon.kinesis.deagg import deaggregate, is_aggregated


class Unit:
    """One handler record and its position: sub-records `0..n-1` of the Kinesis record at
    `sequence` (n = 1 for a plain record); `last` is true for the final one."""

    __slots__ = ("last", "record", "sequence", "size", "sub")

    def __init__(self, record: Record, sequence: str, sub: int, last: bool, size: int) -> None:
        self.record = record
        self.sequence = sequence
        self.sub = sub
        self.last = last
        self.size = size


def units(
    raw: dict[str, Any], *, stream: str, shard: ShardInfo, decoder: Decoder
) -> tuple[list[Unit], int]:
    """The units of one fetched record, and how many sub-records were dropped because their
    hash key belongs to another shard (KPL aggregation before a reshard)."""
    data: bytes = raw["Data"]
    sequence: str = raw["SequenceNumber"]
    arrival = raw.get("ApproximateArrivalTimestamp")
    where = _Where(
        stream, shard, arrival.isoformat() if isinstance(arrival, datetime) else arrival, decoder
    )
    subs = deaggregate(data) if is_aggregated(data) else None
    if subs is None:  # a plain record (or one that only looked aggregated)
        return [_unit(where, data, sequence, 0, True, raw["PartitionKey"])], 0
    out: list[Unit] = []
    dropped = 0
    last = len(subs) - 1
    for index, sub in enumerate(subs):
        if not shard.owns(hash_key(sub.partition_key, sub.explicit_hash_key)):
            dropped += 1
            continue
        out.append(_unit(where, sub.data, sequence, index, index == last, sub.partition_key, True))
    if out and not out[-1].last:
        # The last sub-record was dropped: the one kept before it completes the Kinesis record.
        out[-1].last = True
    return out, dropped


class _Where:
    __slots__ = ("arrival", "decoder", "shard", "stream")

    def __init__(self, stream: str, shard: ShardInfo, arrival: Any, decoder: Decoder) -> None:
        self.stream = stream
        self.shard = shard
        self.arrival = arrival
        self.decoder = decoder


def _unit(  # noqa: PLR0917 - the hot path: positional on purpose
    where: _Where,
    body: bytes,
    sequence: str,
    sub: int,
    last: bool,
    partition_key: str,
    aggregated: bool = False,
) -> Unit:
    kind, text, data = decode_payload(body, where.decoder)
    meta: dict[str, Any] = {
        "stream": where.stream,
        "shard": where.shard.id,
        "partition_key": partition_key,
        "sequence": sequence,
        "arrival": where.arrival,
    }
    if aggregated:
        meta["subsequence"] = sub
    record = Record(
        source="kinesis",
        id=f"{sequence}:{sub}" if aggregated else sequence,
        body=body,
        kind=kind,
        text=text,
        data=data,
        meta=meta,
    )
    return Unit(record, sequence, sub, last, len(body))
