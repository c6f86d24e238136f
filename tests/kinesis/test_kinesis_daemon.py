"""The Kinesis reader in real `awsd` processes: SIGKILL and restart, a fleet of two daemons
sharing a stream through DynamoDB leases, and the S3 archive surviving a crash."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ConfigFactory
from tests.support import kinesis as k
from tests.support.proc import Awsd

pytestmark = pytest.mark.slow


def declared(stream: str, bucket: str | None = None) -> dict[str, Any]:
    """The stream (and bucket) declared as resources, as readers must name them; the reconciler
    stays off (the test creates them)."""
    resources: dict[str, Any] = {"mode": "off", "streams": {"s": {"name": stream}}}
    if bucket:
        resources["buckets"] = {"b": {"name": bucket}}
    return resources


def log_handler_reader(stream: str, **options: Any) -> dict[str, Any]:
    del stream  # named through the declared resource `s`
    return {
        "stream": "s",
        "handler": {"kind": "log"},
        "decoder": "text",
        "idle_interval": 0.1,
        "shard_refresh_interval": 5,
        **options,
    }


def seen(proc: Awsd, stream: str) -> list[dict[str, Any]]:
    return proc.logs.matching("record", stream=stream)


def wait_seen(procs: list[Awsd], stream: str, texts: set[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = {e["body"] for p in procs for e in seen(p, stream)}
        if texts <= got:
            return
        assert time.monotonic() < deadline, f"missing {len(texts - got)} records, e.g. " + str(
            sorted(texts - got)[:3]
        )
        time.sleep(0.1)


def test_sigkill_and_restart_resume_from_the_checkpoint(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto
):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 4)
    produced = k.keyed(600)
    k.put(kinesis, stream, produced)
    batch = 40
    reader = log_handler_reader(
        stream,
        max_records=10,  # slow enough to be killed half way
        checkpoints={"every_records": batch, "every_seconds": 600},
    )
    path = configs.write({"kinesis": {"readers": {"r": reader}}, "resources": declared(stream)})
    first = awsd(path)
    first.logs.wait_for("record", count=250, stream=stream, timeout=30)
    first.signal(signal.SIGKILL)
    first.wait(10)
    before = seen(first, stream)
    more = k.keyed(100, start=600)
    k.put(kinesis, stream, more)

    second = awsd(path)
    everything = {d.decode() for _, d in produced + more}
    wait_seen([first, second], stream, everything)
    second.stop()
    after = seen(second, stream)
    # No gap: everything arrived. Duplicates: only what was processed after a shard's last
    # checkpoint before the kill, at most one checkpoint batch per shard.
    repeated = Counter(e["shard"] for e in after if e["body"] in {b["body"] for b in before})
    assert all(count < batch for count in repeated.values()), repeated
    assert k.per_key_order_holds([e["body"] for e in after])


def lease_state(proc: Awsd) -> dict[str, Any]:
    status, body = proc.http("/status")
    assert status == 200
    return body["workers"]["kinesis:r"].get("leases", {})


def wait_leases(proc: Awsd, count: int, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while len(lease_state(proc).get("held", [])) != count:
        assert time.monotonic() < deadline, f"leases: {lease_state(proc)}"
        time.sleep(0.1)
    return time.monotonic()


def test_two_daemons_share_a_stream_and_fail_over(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto
):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 4)
    failover = 2.0
    reader = log_handler_reader(
        stream,
        checkpoints={"store": "dynamodb", "every_records": 20, "every_seconds": 1},
        leases={"table": k.stream_name("leases"), "failover_time": failover},
    )
    data = {"kinesis": {"readers": {"r": reader}}, "resources": declared(stream)}
    a_path = configs.write(data, name="a.toml")
    # Two machines: each its own state (a daemon refuses a state directory another one holds).
    elsewhere = {"runtime": {"state_dir": str(configs.tmp_path / "state-b")}}
    b_path = configs.write({**data, **elsewhere}, name="b.toml")
    a = awsd(a_path)
    a.wait_ready()
    wait_leases(a, 4)  # alone, it takes every shard
    b = awsd(b_path)
    b.wait_ready()
    wait_leases(b, 2)  # the newcomer steals one lease per round until balanced
    wait_leases(a, 2)
    assert set(lease_state(a)["held"]).isdisjoint(lease_state(b)["held"])
    # The gauge follows at the end of each lease round.
    deadline = time.monotonic() + 10 * failover
    while not leases_held_metric(a) == leases_held_metric(b) == 2:
        assert time.monotonic() < deadline, (leases_held_metric(a), leases_held_metric(b))
        time.sleep(0.1)

    first = k.keyed(400)
    k.put(kinesis, stream, first)
    wait_seen([a, b], stream, {d.decode() for _, d in first})
    assert {e["shard"] for e in seen(a, stream)}.isdisjoint({e["shard"] for e in seen(b, stream)})

    a.signal(signal.SIGKILL)
    killed = time.monotonic()
    a.wait(10)
    second = k.keyed(400, start=400)
    k.put(kinesis, stream, second)
    took_over = wait_leases(b, 4, timeout=10 * failover)
    try:
        wait_seen([a, b], stream, {d.decode() for _, d in first + second})
    except AssertionError:
        events = [e for e in b.logs.events if e.get("event") != "record"]
        raise AssertionError(f"{lease_state(b)}\n" + "\n".join(map(str, events[-40:]))) from None
    b.stop()
    takeover_s = took_over - killed
    print(f"takeover after SIGKILL: {takeover_s:.2f}s with failover_time {failover}s")
    stolen = b.logs.matching("lease taken", previous_owner=lease_state_owner(a))
    assert len(stolen) >= 2
    assert k.per_key_order_holds([e["body"] for e in seen(b, stream)])


def leases_held_metric(proc: Awsd) -> float:
    """`awsd_kinesis_leases_held` from the daemon's /metrics (all its series added up)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = proc.http("/metrics")
    assert status == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "awsd_kinesis_leases_held"
        for sample in family.samples
    )


def lease_state_owner(proc: Awsd) -> str:
    event = proc.logs.wait_for("reading as part of a fleet")
    return str(event["owner"])


def test_archive_after_sigkill_with_a_partial_buffer_loses_nothing(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto
):
    stream, bucket = k.stream_name(), k.stream_name("bucket")
    kinesis, s3 = boto("kinesis"), boto("s3")
    k.create_stream(kinesis, stream, 2)
    s3.create_bucket(Bucket=bucket)
    produced = k.keyed(120)
    k.put(kinesis, stream, produced)
    reader = log_handler_reader(
        stream, archive={"bucket": "b", "prefix": "a/", "buffer_seconds": 3600}
    )
    data = configs.data(
        {"kinesis": {"readers": {"r": reader}}, "resources": declared(stream, bucket)}
    )
    path = configs.tmp_path / "awsd.toml"
    configs.rewrite(path, data)
    first = awsd(path)
    first.logs.wait_for("record", count=120, stream=stream)
    first.signal(signal.SIGKILL)  # dies with both shards' records buffered, unwritten
    first.wait(10)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0

    data["kinesis"]["readers"]["r"]["archive"]["buffer_seconds"] = 0.5
    configs.rewrite(path, data)
    second = awsd(path)
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while len(lines) < 120:
        assert time.monotonic() < deadline, f"archived {len(lines)} of 120"
        time.sleep(0.2)
        lines = []
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix="a/").get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            lines += [line.decode() for line in body.splitlines()]
    second.stop()
    import json

    assert sorted(json.loads(line)["data"] for line in lines) == sorted(
        d.decode() for _, d in produced
    )
