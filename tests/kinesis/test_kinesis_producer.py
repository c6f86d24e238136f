"""The `kinesis` outbox sender against a real moto server: PutRecords batches, per-record
retries (injected by a protocol-level front), order per partition key, the per-shard rate."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from daemon.config.models import Config
from daemon.config.partition import PartitionKeyConfig
from daemon.outbox.producer import kinesis_message
from tests.support import kinesis as k
from tests.support.aws_front import AwsFront
from tests.support.observe import wait_until
from tests.support.outbox import Delivery, StartDelivery, make_outbox


@pytest.fixture
def producer(delivery: StartDelivery) -> StartDelivery:
    """The outbox worker with these `kinesis.producer` settings, on the moto server unless
    `endpoint` says otherwise."""

    async def start(endpoint: str | None = None, **settings: Any) -> Delivery:
        config = Config.model_validate(
            {"env": "test", "kinesis": {"producer": settings}, "runtime": {"state_dir": "/tmp"}}
        )
        outbox = make_outbox(retry_initial=0.05, retry_max=0.2)
        return await delivery(outbox, endpoint, config)

    return start


def read_stream(kinesis: Any, stream: str) -> list[tuple[str, str]]:
    """Every record of every shard, shard by shard in sequence order: (partition key, data)."""
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        got = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        out += [(r["PartitionKey"], r["Data"].decode()) for r in got["Records"]]
    return out


def numbered(stream: str, count: int, keys: int) -> list[Any]:
    return [
        kinesis_message(
            stream,
            {"sensor": f"s{n % keys}", "n": n},
            key=PartitionKeyConfig(source="field", field="sensor"),
        )
        for n in range(count)
    ]


def order_per_key(records: list[tuple[str, str]]) -> dict[str, list[int]]:
    by_key: dict[str, list[int]] = {}
    for key, data in records:
        by_key.setdefault(key, []).append(json.loads(data)["n"])
    return by_key


async def test_records_reach_the_stream_in_batches(boto, producer):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 4)
    p = await producer()
    await p.outbox.put_many(numbered(stream, 1200, keys=400))  # a few records per key and call
    await wait_until(lambda: p.outbox.count == 0)
    records = read_stream(kinesis, stream)
    assert len(records) == 1200
    assert all(ns == sorted(ns) for ns in order_per_key(records).values())


async def test_failed_records_alone_are_retried(boto, producer, aws_front: AwsFront):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 2)
    p = await producer(aws_front.url)
    attempts: dict[str, int] = {}

    def fail_once_for_every_third(entry: dict[str, Any]) -> bool:
        data = base64.b64decode(entry["Data"]).decode()
        n = json.loads(data)["n"]
        attempts[data] = attempts.get(data, 0) + 1
        return n % 3 == 0 and attempts[data] == 1

    aws_front.fail_records(fail_once_for_every_third)
    await p.outbox.put_many(numbered(stream, 90, keys=90))  # one record per key
    await wait_until(lambda: p.outbox.count == 0)
    records = read_stream(kinesis, stream)
    assert sorted(json.loads(d)["n"] for _, d in records) == list(range(90))  # no duplicate
    assert max(attempts.values()) == 2 and sum(attempts.values()) == 120
    assert p.metric("awsd_kinesis_put_failed_records_total") == 30
    assert p.metric("awsd_kinesis_put_reordered_total") == 0  # distinct keys: nothing to reorder


def fail_first_try_of_every_fifth() -> Any:
    failed: set[str] = set()

    def check(entry: dict[str, Any]) -> bool:
        data = base64.b64decode(entry["Data"]).decode()
        if json.loads(data)["n"] % 5 == 0 and data not in failed:
            failed.add(data)
            return True
        return False

    return check


async def test_by_default_a_failed_record_is_not_overtaken_by_a_later_one_of_its_key(
    boto, producer, aws_front: AwsFront
):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 1)
    aws_front.fail_records(fail_first_try_of_every_fifth())
    p = await producer(aws_front.url)
    await p.outbox.put_many(numbered(stream, 40, keys=2))
    await wait_until(lambda: p.outbox.count == 0)
    in_order = order_per_key(read_stream(kinesis, stream))
    assert in_order == {"s0": list(range(0, 40, 2)), "s1": list(range(1, 40, 2))}
    assert p.metric("awsd_kinesis_put_failed_records_total") == 8
    assert p.metric("awsd_kinesis_put_reordered_total") == 0
    # No call carried two records of one key.
    for call in aws_front.calls("PutRecords"):
        keys = [r["PartitionKey"] for r in call.request["Records"]]
        assert len(keys) == len(set(keys))


async def test_without_strict_order_a_retried_record_can_land_after_later_ones(
    boto, producer, aws_front: AwsFront
):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 1)
    aws_front.fail_records(fail_first_try_of_every_fifth())
    p = await producer(aws_front.url, strict_order=False)
    await p.outbox.put_many(numbered(stream, 40, keys=2))
    await wait_until(lambda: p.outbox.count == 0)
    by_key = order_per_key(read_stream(kinesis, stream))
    assert any(ns != sorted(ns) for ns in by_key.values())  # reordered, and counted
    assert p.metric("awsd_kinesis_put_reordered_total") > 0
    assert sorted(n for ns in by_key.values() for n in ns) == list(range(40))  # nothing lost


async def test_the_per_shard_rate_limit_paces_instead_of_being_throttled(boto, producer):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 2)
    # Full calls (not one record per key per call) make the debt of one call easy to predict.
    p = await producer(shard_records_per_second=40, strict_order=False)
    await p.outbox.put_many(numbered(stream, 120, keys=4))
    await wait_until(lambda: p.outbox.count == 0)
    assert p.metric("awsd_kinesis_put_rate_wait_seconds_total") == 0  # a full bucket to start
    await p.outbox.put_many(numbered(stream, 120, keys=4))
    await wait_until(lambda: p.outbox.count == 0)
    assert len(read_stream(kinesis, stream)) == 240
    # The first call took about 60 records per shard, 20 more than a second's worth at 40/s:
    # the next call waited for that debt instead of being throttled by AWS.
    assert p.metric("awsd_kinesis_put_rate_wait_seconds_total") > 0
