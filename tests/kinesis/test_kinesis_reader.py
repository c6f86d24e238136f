"""The Kinesis reader in process, against a real moto server (and a protocol-level fault front,
and a moto server with AWS's resharding behaviour): multi-shard reads, resuming, expired
iterators, throttling, backpressure, failures, KPL records, resharding, the S3 archive."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from daemon.core.shards import hash_key
from daemon.kinesis.deagg import aggregate
from tests.support import kinesis as k
from tests.support.aws_front import AwsFront
from tests.support.moto_server import MotoServer
from tests.support.observe import wait_until

FAST = {"idle_interval": 0.05, "shard_refresh_interval": 5}


def reader(stream: str, handler: str = "collect", **options: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"stream": stream, **FAST, **options}
    if handler:
        cfg["handler"] = {"kind": "python", "entrypoint": f"tests.support.kinesis:{handler}"}
    return cfg


def texts(stream: str) -> list[str]:
    return [r.text or "" for r in k.SEEN[stream]]


def checkpoints(tmp_path: Path) -> dict[str, str]:
    db = sqlite3.connect(tmp_path / "state" / "kinesis-checkpoints.sqlite3")
    try:
        return {s: p for s, p in db.execute("SELECT shard, position FROM checkpoints")}
    finally:
        db.close()


async def test_every_shard_is_read_once_in_order_per_key(tmp_path, boto, moto_endpoint):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 4)
    produced = k.keyed(400)
    k.put(kinesis, stream, produced)
    r = await k.Reader(k.reader_config(tmp_path, moto_endpoint, {"r": reader(stream)})).start()
    try:
        await wait_until(lambda: len(k.SEEN[stream]) >= 400)
        health = r.worker("r").health()
    finally:
        await r.stop()
    assert sorted(texts(stream)) == sorted(d.decode() for _, d in produced)
    assert k.per_key_order_holds(texts(stream))
    assert {rec.meta["shard"] for rec in k.SEEN[stream]} == {
        f"shardId-00000000000{i}" for i in range(4)
    }
    assert len(health["shards"]) == 4
    # A graceful stop checkpoints everything processed: a restart reads only what is new.
    assert all(p.isdigit() for p in checkpoints(tmp_path).values())
    k.put(kinesis, stream, k.keyed(40, prefix="later", start=400))
    again = await k.Reader(k.reader_config(tmp_path, moto_endpoint, {"r": reader(stream)})).start()
    try:
        await wait_until(lambda: len(k.SEEN[stream]) >= 440)
        await asyncio.sleep(0.3)  # a duplicate would show up here
    finally:
        await again.stop()
    assert len(k.SEEN[stream]) == 440
    assert sum(t.startswith("later") for t in texts(stream)) == 40


async def test_checkpoints_of_a_stream_created_again_are_dropped_not_resumed_after(
    tmp_path, boto, moto_endpoint
):
    """A stream deleted and created again under its name (or a local endpoint started afresh,
    as a second `make run` does) restarts its sequence numbers: resuming after the old
    checkpoints would skip the new stream's first records."""
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 1)
    k.put(kinesis, stream, k.keyed(30, prefix="old"))
    config = k.reader_config(tmp_path, moto_endpoint, {"r": reader(stream)})
    r = await k.Reader(config).start()
    try:
        await wait_until(lambda: len(k.SEEN[stream]) >= 30)
    finally:
        await r.stop()
    assert all(p.isdigit() for p in checkpoints(tmp_path).values())

    kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    await wait_until(lambda: stream not in kinesis.list_streams()["StreamNames"])
    k.create_stream(kinesis, stream, 1)
    k.put(kinesis, stream, k.keyed(5, prefix="new"))
    r = await k.Reader(config).start()
    try:
        await wait_until(lambda: sum(t.startswith("new") for t in texts(stream)) >= 5)
    finally:
        await r.stop()
    assert [t for t in texts(stream) if t.startswith("new")] == [
        d.decode() for _, d in k.keyed(5, prefix="new")
    ]


async def test_expired_iterators_and_throttling_lose_and_repeat_nothing(tmp_path, boto, aws_front):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 2)
    k.put(kinesis, stream, k.keyed(100, prefix="a"))
    aws_front.fail("GetRecords", "ProvisionedThroughputExceededException", times=8)
    config = k.reader_config(tmp_path, aws_front.url, {"r": reader(stream, retry_max=0.2)})
    # botocore's adaptive mode would also slow the whole client after throttles; standard
    # keeps this test about the reader's own backoff.
    config["aws"]["retry_mode"] = "standard"
    r = await k.Reader(config).start()
    try:
        await wait_until(lambda: len(k.SEEN[stream]) >= 100)
        aws_front.fail("GetRecords", "ExpiredIteratorException", times=3)
        k.put(kinesis, stream, k.keyed(100, prefix="b", start=100))
        await wait_until(lambda: len(k.SEEN[stream]) >= 200)
        await asyncio.sleep(0.3)
        expired = r.metric("awsd_kinesis_expired_iterators_total")
        throttles = r.metric("awsd_kinesis_throttles_total")
        behind = r.metric("awsd_kinesis_millis_behind_latest")
    finally:
        await r.stop()
    assert len(k.SEEN[stream]) == 200  # no duplicate
    assert sorted(texts(stream)) == sorted(
        [d.decode() for _, d in k.keyed(100, prefix="a") + k.keyed(100, prefix="b", start=100)]
    )
    assert k.per_key_order_holds(texts(stream))
    injected = [c.error for c in aws_front.calls("GetRecords")]
    assert expired == 3 and injected.count("ExpiredIteratorException") == 3
    assert throttles >= 1  # botocore retries some itself; the rest reach the reader's backoff
    assert behind >= 0


async def test_empty_pages_while_behind_do_not_idle(tmp_path, boto, aws_front):
    """Kinesis answers empty pages with MillisBehindLatest > 0 while a reader skips through
    sparse or trimmed data: the reader goes on at its GetRecords pace and idles only at the tip."""
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 1)
    k.put(kinesis, stream, k.keyed(10))

    def empty_but_behind(request: dict[str, Any]) -> dict[str, Any]:
        return {"Records": [], "NextShardIterator": request["ShardIterator"],
                "MillisBehindLatest": 60_000}  # fmt: skip

    aws_front.stub("GetRecords", answer=empty_but_behind, times=4)
    # An idle interval far longer than the wait below: one idle pause would fail the test.
    cfg = reader(stream, idle_interval=60.0)
    r = await k.Reader(k.reader_config(tmp_path, aws_front.url, {"r": cfg})).start()
    try:
        await wait_until(lambda: len(k.SEEN[stream]) >= 10, timeout=30)
        behind = r.metric("awsd_kinesis_millis_behind_latest")
    finally:
        await r.stop()
    assert texts(stream) == [d.decode() for _, d in k.keyed(10)]
    assert len(aws_front.calls("GetRecords")) >= 5  # four empty pages, then the records
    assert behind == 0  # moto's answer with the records: at the tip


async def test_get_records_is_paced_per_shard_even_when_behind(tmp_path, boto, aws_front):
    stream = k.stream_name()
    k.create_stream(boto("kinesis"), stream, 1)

    def empty_but_behind(request: dict[str, Any]) -> dict[str, Any]:
        return {"Records": [], "NextShardIterator": request["ShardIterator"],
                "MillisBehindLatest": 60_000}  # fmt: skip

    aws_front.stub("GetRecords", answer=empty_but_behind, times=None)  # answers at once
    cfg = reader(stream, idle_interval=60.0, max_fetches_per_second=2)
    r = await k.Reader(k.reader_config(tmp_path, aws_front.url, {"r": cfg})).start()
    try:
        await wait_until(lambda: len(aws_front.calls("GetRecords")) >= 2)
        loop = asyncio.get_running_loop()
        began, calls = loop.time(), len(aws_front.calls("GetRecords"))
        await asyncio.sleep(1.5)
        elapsed, made = loop.time() - began, len(aws_front.calls("GetRecords")) - calls
    finally:
        await r.stop()
    # An upper bound only (a busy machine makes fewer calls, never more): the pace holds even
    # with nothing to wait for, and behind means no idle pause either (made > 0).
    assert 0 < made <= 2 * elapsed + 1


async def full_and_paused(r: k.Reader, aws_front: Any) -> Any:
    """Reader `r`'s one shard consumer, once its buffer is full and fetching has stopped."""
    await wait_until(lambda: bool(r.worker("r").running))
    consumer = next(iter(r.worker("r").running.values())).consumer
    await wait_until(consumer.buffer.full)
    calls = len(aws_front.calls("GetRecords"))
    await asyncio.sleep(0.5)  # ten idle intervals: a fetch would happen if it could
    assert len(aws_front.calls("GetRecords")) == calls
    return consumer


async def test_a_stalled_handler_pauses_fetching_and_loses_nothing(tmp_path, boto, aws_front):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 1)
    k.put(kinesis, stream, k.keyed(120))
    k.GATES[stream] = asyncio.Event()
    cfg = reader(stream, "stall", buffer_records=20, max_records=7)
    r = await k.Reader(k.reader_config(tmp_path, aws_front.url, {"r": cfg})).start()
    try:
        consumer = await full_and_paused(r, aws_front)
        # Exactly at the limit: each GetRecords asked for no more than the free room.
        assert consumer.buffer.records == 20 and len(k.SEEN[stream]) == 0
        k.GATES[stream].set()
        await wait_until(lambda: len(k.SEEN[stream]) >= 120)
    finally:
        k.GATES[stream].set()
        await r.stop()
    assert texts(stream) == [d.decode() for _, d in k.keyed(120)]  # one shard: total order


async def test_the_byte_bound_pauses_fetching_too(tmp_path, boto, aws_front):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 1)
    padded = [(key, data + b" " + b"x" * 200) for key, data in k.keyed(60)]
    k.put(kinesis, stream, padded)
    k.GATES[stream] = asyncio.Event()
    cfg = reader(stream, "stall", buffer_records=1000, buffer_bytes=1024, max_records=3)
    r = await k.Reader(k.reader_config(tmp_path, aws_front.url, {"r": cfg})).start()
    try:
        consumer = await full_and_paused(r, aws_front)
        # Full by bytes long before the record bound; at most one response (3 records) over.
        assert 1024 <= consumer.buffer.bytes < 1024 + 3 * 230
        assert consumer.buffer.records < 1000
        k.GATES[stream].set()
        await wait_until(lambda: len(k.SEEN[stream]) >= 60)
    finally:
        k.GATES[stream].set()
        await r.stop()
    assert [t.split(" x")[0] for t in texts(stream)] == [d.decode() for _, d in k.keyed(60)]


async def test_shards_listed_over_several_pages_are_all_read(tmp_path, boto, aws_front):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 3)
    k.put(kinesis, stream, k.keyed(90, keys=30))
    shards = kinesis.list_shards(StreamName=stream)["Shards"]

    def paged(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("NextToken") == "page-2":
            assert "StreamName" not in request  # the token carries the stream
            return {"Shards": shards[2:]}
        return {"Shards": shards[:2], "NextToken": "page-2"}

    aws_front.stub("ListShards", answer=paged, times=None)
    r = await k.Reader(k.reader_config(tmp_path, aws_front.url, {"r": reader(stream)})).start()
    try:
        await wait_until(lambda: len(k.SEEN[stream]) >= 90)
    finally:
        await r.stop()
    assert {rec.meta["shard"] for rec in k.SEEN[stream]} == {s["ShardId"] for s in shards}
    assert len(aws_front.calls("ListShards")) >= 2


async def test_failed_records_are_retried_in_place_or_skipped(tmp_path, boto, moto_endpoint):
    kinesis = boto("kinesis")
    retry, skip = k.stream_name(), k.stream_name()
    for stream in (retry, skip):
        k.create_stream(kinesis, stream, 1)
        k.put(kinesis, stream, k.keyed(10))
        k.FAIL_FIRST[stream] = 3
    readers = {
        "retry": reader(retry, "flaky", retry_max=0.1),
        "skip": reader(skip, "flaky", on_failure="skip"),
    }
    r = await k.Reader(k.reader_config(tmp_path, moto_endpoint, readers)).start()
    try:
        await wait_until(lambda: len(k.SEEN[retry]) >= 10 and len(k.SEEN[skip]) >= 7)
        skipped = r.metric("awsd_kinesis_skipped_total", reader="skip")
        failures = r.metric("awsd_kinesis_handler_failures_total", reader="retry")
    finally:
        await r.stop()
    assert texts(retry) == [d.decode() for _, d in k.keyed(10)]  # the shard waited: order held
    assert failures == 3
    assert texts(skip) == [d.decode() for _, d in k.keyed(10)][3:] and skipped == 3


async def test_kpl_aggregated_records_reach_handlers_one_by_one(tmp_path, boto, moto_endpoint):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 2)
    low_end = int(
        kinesis.list_shards(StreamName=stream)["Shards"][0]["HashKeyRange"]["EndingHashKey"]
    )
    keys = [f"key{i}" for i in range(60)]
    low = [x for x in keys if hash_key(x) <= low_end][:3]
    high = [x for x in keys if hash_key(x) > low_end][:2]
    subs = [(low[0], b"one"), (high[0], b"stray"), (low[1], b"two"), (low[2], b"three")]
    kinesis.put_record(
        StreamName=stream, PartitionKey=low[0], Data=aggregate(subs), ExplicitHashKey="0"
    )
    kinesis.put_record(StreamName=stream, PartitionKey=high[1], Data=b"plain")
    r = await k.Reader(
        k.reader_config(tmp_path, moto_endpoint, {"r": reader(stream, decoder="text")})
    ).start()
    try:
        await wait_until(lambda: len(k.SEEN[stream]) >= 4)
        await asyncio.sleep(0.2)
        dropped = r.metric("awsd_kinesis_dropped_subrecords_total")
    finally:
        await r.stop()
    assert sorted(texts(stream)) == ["one", "plain", "three", "two"]
    ids = [rec.id for rec in k.SEEN[stream] if rec.text != "plain"]
    assert [i.split(":")[1] for i in ids] == ["0", "2", "3"]
    assert dropped == 1


@pytest.fixture(scope="module")
def reshard_endpoint() -> Iterator[str]:
    """A moto server with AWS's resharding behaviour (see tests/support/moto_kinesis.py)."""
    server = MotoServer("tests.support.moto_kinesis").start()
    yield server.url
    server.stop()


@pytest.mark.slow
async def test_split_and_merge_during_consumption_keep_order_per_key(tmp_path, reshard_endpoint):
    kinesis = boto3.client("kinesis", endpoint_url=reshard_endpoint, region_name="us-east-1")
    stream = k.stream_name()
    k.create_stream(kinesis, stream, 2)
    records = k.keyed(900, keys=12)
    k.put(kinesis, stream, records[:300])
    cfg = reader(stream, "stall", max_records=25, max_fetches_per_second=5)
    k.GATES[stream] = asyncio.Event()
    r = await k.Reader(k.reader_config(tmp_path, reshard_endpoint, {"r": cfg})).start()
    try:
        k.GATES[stream].set()
        await wait_until(lambda: len(k.SEEN[stream]) >= 50)
        # Split shard 0 while its records are still being read, then write more.
        kinesis.split_shard(
            StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126)
        )
        k.put(kinesis, stream, records[300:600])
        # Merge the two children back while they may not even have started.
        kinesis.merge_shards(
            StreamName=stream,
            ShardToMerge="shardId-000000000002",
            AdjacentShardToMerge="shardId-000000000003",
        )
        k.put(kinesis, stream, records[600:])
        await wait_until(lambda: len(k.SEEN[stream]) >= 900, timeout=60)
        await asyncio.sleep(0.3)
        health = r.worker("r").health()
    finally:
        await r.stop()
    assert len(k.SEEN[stream]) == 900
    assert sorted(texts(stream)) == sorted(d.decode() for _, d in records)
    assert k.per_key_order_holds(texts(stream))
    shards_seen = {rec.meta["shard"] for rec in k.SEEN[stream]}
    assert {"shardId-000000000002", "shardId-000000000003", "shardId-000000000004"} <= shards_seen
    assert {"shardId-000000000000", "shardId-000000000002", "shardId-000000000003"} <= set(
        health["ended"]
    )
    first_seen = {}
    for index, rec in enumerate(k.SEEN[stream]):
        first_seen.setdefault(rec.meta["shard"], index)
    last_seen = {rec.meta["shard"]: i for i, rec in enumerate(k.SEEN[stream])}
    # Children only after their parents were read to the end.
    assert last_seen["shardId-000000000000"] < first_seen["shardId-000000000002"]
    assert (
        max(last_seen["shardId-000000000002"], last_seen["shardId-000000000003"])
        < (first_seen["shardId-000000000004"])
    )
    assert checkpoints(tmp_path)["shardId-000000000000"] == "SHARD_END"


@pytest.mark.parametrize("store", ["sqlite", "dynamodb"])
async def test_children_start_when_their_parent_ends_not_at_the_next_listing(
    tmp_path, reshard_endpoint, store
):
    """Default settings: shards listed every 60 s, and (a fleet of one) leases balanced every
    failover_time / 3 (here 200 s, so no periodic round can help). The parent's end alone lists
    the shards again and takes the children's leases: they are read at once, in order."""
    front = AwsFront(reshard_endpoint).start()
    try:
        kinesis = boto3.client("kinesis", endpoint_url=reshard_endpoint, region_name="us-east-1")
        stream = k.stream_name()
        k.create_stream(kinesis, stream, 1)
        records = k.keyed(100, keys=12)
        k.put(kinesis, stream, records[:50])
        cfg: dict[str, Any] = {
            "stream": stream,
            "handler": {"kind": "python", "entrypoint": "tests.support.kinesis:collect"},
        }
        if store == "dynamodb":
            cfg["checkpoints"] = {"store": "dynamodb"}
            cfg["leases"] = {"table": k.stream_name("leases"), "failover_time": 600}
        r = await k.Reader(k.reader_config(tmp_path, front.url, {"r": cfg})).start()
        try:
            await wait_until(lambda: len(k.SEEN[stream]) >= 50)
            kinesis.split_shard(
                StreamName=stream,
                ShardToSplit="shardId-000000000000",
                NewStartingHashKey=str(2**127),
            )
            k.put(kinesis, stream, records[50:])
            await wait_until(lambda: len(k.SEEN[stream]) >= 100, timeout=30)
            await asyncio.sleep(0.3)
            health = r.worker("r").health()
        finally:
            await r.stop()
    finally:
        front.stop()
    assert sorted(texts(stream)) == sorted(d.decode() for _, d in records)  # no repeat
    assert k.per_key_order_holds(texts(stream))
    assert health["ended"] == ["shardId-000000000000"]
    # One listing at the start, one when the parent ended: the children waited for no timer.
    calls = front.calls(service="kinesis")
    listings = [i for i, c in enumerate(calls) if c.operation == "ListShards"]
    assert len(listings) == 2
    first_child = min(
        i
        for i, c in enumerate(calls)
        if c.operation == "GetShardIterator" and c.request["ShardId"] != "shardId-000000000000"
    )
    assert listings[1] < first_child


def read_archive(s3: Any, bucket: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    lines = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        if obj["Key"].endswith(".gz"):
            body = gzip.decompress(body)
        lines += [(obj["Key"], json.loads(line)) for line in body.splitlines()]
    return lines


def stream_and_bucket(boto: Any, shards: int) -> tuple[str, str, Any, Any]:
    """A new stream and archive bucket: (stream, bucket, kinesis client, s3 client)."""
    stream, bucket = k.stream_name(), k.stream_name("bucket")
    kinesis, s3 = boto("kinesis"), boto("s3")
    k.create_stream(kinesis, stream, shards)
    s3.create_bucket(Bucket=bucket)
    return stream, bucket, kinesis, s3


async def test_archive_objects_hold_exactly_the_records_and_checkpoint_after_writing(
    tmp_path, boto, moto_endpoint
):
    stream, bucket, kinesis, s3 = stream_and_bucket(boto, shards=2)
    produced = k.keyed(150)
    k.put(kinesis, stream, produced)
    archive = {"bucket": bucket, "prefix": "raw/", "buffer_seconds": 3600, "gzip": True}
    cfg = reader(stream, handler="", archive=archive)
    r = await k.Reader(k.reader_config(tmp_path, moto_endpoint, {"r": cfg})).start()
    try:
        await wait_until(lambda: r.metric("awsd_kinesis_records_total") >= 150)
        await asyncio.sleep(0.2)
        # Everything handled, nothing written yet: the checkpoints have not moved, and the
        # checkpoint lag says how many records a crash now would read again.
        assert set(checkpoints(tmp_path).values()) == {"TRIM_HORIZON"}
        assert read_archive(s3, bucket, "raw/") == []
        assert r.metric("awsd_kinesis_checkpoint_lag_records") == 150
    finally:
        await r.stop()  # a graceful stop writes the partial buffers, then checkpoints
    lines = read_archive(s3, bucket, "raw/")
    assert sorted(entry["data"] for _, entry in lines) == sorted(d.decode() for _, d in produced)
    now = time.gmtime()
    for key, entry in lines:
        assert key.startswith(f"raw/{now.tm_year:04d}/{now.tm_mon:02d}/")
        assert key.endswith(".jsonl.gz") and stream in key
        assert entry["partition_key"].startswith("k") and entry["sequence"].isdigit()
    assert all(p.isdigit() for p in checkpoints(tmp_path).values())


async def test_archive_objects_are_written_by_size_and_named_by_shard_and_first_record(
    tmp_path, boto, moto_endpoint
):
    stream, bucket, kinesis, s3 = stream_and_bucket(boto, shards=1)
    produced = [(key, data + b" " + b"y" * 100) for key, data in k.keyed(60)]
    k.put(kinesis, stream, produced)
    # An hour by time, 1 KiB by size: only the size can write objects while it runs.
    archive = {"bucket": bucket, "prefix": "raw/", "buffer_seconds": 3600, "buffer_bytes": 1024}
    cfg = reader(stream, handler="", archive=archive)
    r = await k.Reader(k.reader_config(tmp_path, moto_endpoint, {"r": cfg})).start()
    try:
        await wait_until(lambda: r.metric("awsd_kinesis_records_total") >= 60)
        written = read_archive(s3, bucket, "raw/")
    finally:
        await r.stop()  # writes the last, partial buffer
    assert len(written) >= 50  # objects written by size while running
    lines = read_archive(s3, bucket, "raw/")
    assert [e["data"] for _, e in sorted(lines, key=lambda le: int(le[1]["sequence"]))] == [
        d.decode() for _, d in produced
    ]
    objects: dict[str, list[dict[str, Any]]] = {}
    for key, entry in lines:
        objects.setdefault(key, []).append(entry)
    assert len(objects) >= 5  # ~6 KiB of lines in 1 KiB objects
    for key, entries in objects.items():
        first = min(entries, key=lambda e: int(e["sequence"]))
        # `<prefix><YYYY/MM/DD/HH>/<stream>-<shard>-<first sequence>.jsonl` (gzip off)
        assert key.endswith(f"/{stream}-shardId-000000000000-{first['sequence']}.jsonl"), key


async def test_a_handler_past_its_timeout_is_cancelled_and_the_record_retried(
    tmp_path, boto, moto_endpoint
):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 1)
    k.put(kinesis, stream, k.keyed(5))
    k.SLOW_FIRST.add(stream)
    cfg = reader(stream, "slow", handler_timeout=0.3, retry_max=0.1)
    r = await k.Reader(k.reader_config(tmp_path, moto_endpoint, {"r": cfg})).start()
    try:
        await wait_until(lambda: len(k.SEEN[stream]) >= 5)
        failures = r.metric("awsd_kinesis_handler_failures_total")
    finally:
        await r.stop()
    first = k.SEEN[stream][0].id
    assert first in k.CANCELLED and failures == 1
    assert texts(stream) == [d.decode() for _, d in k.keyed(5)]
