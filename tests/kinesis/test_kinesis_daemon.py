"""The Kinesis reader in real `awsd` processes: SIGKILL and restart, a fleet of two daemons
sharing a stream through DynamoDB leases, and the S3 archive surviving a crash."""

from __future__ import annotations

import signal
import threading
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


class Feeder:
    """A busy stream: numbered records put every 50 ms from a thread until stopped."""

    def __init__(self, kinesis: Any, stream: str, start: int = 0, every: int = 8) -> None:
        self.kinesis, self.stream, self.start, self.every = kinesis, stream, start, every
        self.sent: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            batch = k.keyed(self.every, start=self.start + len(self.sent))
            try:
                k.put(self.kinesis, self.stream, batch)
            except Exception:  # the test is failing already (moto gone)
                return
            self.sent += [d.decode() for _, d in batch]

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(10)
        return set(self.sent)


def runs_in_order(proc: Awsd, stream: str) -> bool:
    """Order per key holds within every run of a shard consumer (a run starts at its "reading
    shard" event, after the checkpoint it resumes from): a shard read again after a lease moved
    repeats what followed that checkpoint, in order."""
    runs: dict[str, list[str]] = {}
    for event in proc.logs.events:
        if event.get("event") == "reading shard":
            if not k.per_key_order_holds(runs.get(event["shard"], [])):
                return False
            runs[event["shard"]] = []
        elif event.get("event") == "record" and event.get("stream") == stream:
            runs.setdefault(event["shard"], []).append(event["body"])
    return all(k.per_key_order_holds(bodies) for bodies in runs.values())


def handled_twice(procs: list[Awsd], stream: str, texts: set[str]) -> Counter[str]:
    """Of `texts`, how many were handled more than once (by either daemon), per shard."""
    seen_count: Counter[str] = Counter()
    shard_of: dict[str, str] = {}
    for proc in procs:
        for event in seen(proc, stream):
            if event["body"] in texts:
                seen_count[event["body"]] += 1
                shard_of[event["body"]] = event["shard"]
    return Counter({
        shard: sum(n - 1 for body, n in seen_count.items() if shard_of[body] == shard and n > 1)
        for shard in set(shard_of.values())
    })  # fmt: skip


def story(procs: dict[str, Awsd], shards: Any) -> str:
    """What the daemons logged about `shards`, apart from records: for a failure's message."""
    return "\n".join(
        f"{name}: {e}"
        for name, proc in procs.items()
        for e in proc.logs.events
        if e.get("event") != "record" and (e.get("shard") in shards or "shard" not in e)
    )


def taken_from(proc: Awsd, owner: str) -> Counter[str]:
    """Leases `proc` took from `owner` without a hand-off (expired, or a request unanswered)."""
    return Counter(
        e["shard"]
        for e in proc.logs.events
        if e.get("event") in ("lease taken", "lease stolen") and e.get("previous_owner") == owner
    )


def test_two_daemons_share_a_busy_stream_hand_leases_over_and_fail_over(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto
):
    stream = k.stream_name()
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 4)
    failover, every = 2.0, 20
    reader = log_handler_reader(
        stream,
        checkpoints={"store": "dynamodb", "every_records": every, "every_seconds": 1},
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
    a_owner = lease_state_owner(a)

    # B joins while records keep coming: every lease it gets is handed over by A (A stops at
    # its next renewal or checkpoint, checkpoints and hands over), so nothing is handled twice.
    feeder = Feeder(kinesis, stream)
    b = awsd(b_path)
    b.wait_ready()
    wait_leases(b, 2)
    wait_leases(a, 2)
    assert set(lease_state(a)["held"]).isdisjoint(lease_state(b)["held"])
    # The gauge follows at the end of each lease round.
    deadline = time.monotonic() + 10 * failover
    while not leases_held_metric(a) == leases_held_metric(b) == 2:
        assert time.monotonic() < deadline, (leases_held_metric(a), leases_held_metric(b))
        time.sleep(0.1)
    first = feeder.stop()
    wait_seen([a, b], stream, first)
    handed = a.logs.matching("lease handed over", to=lease_state_owner(b))
    assert len(handed) >= 2
    twice = handled_twice([a, b], stream, first)
    # A lease that moved without a hand-off (its owner looked dead to the other: a starved
    # machine) may repeat what followed its last checkpoint, at most `every` records.
    moved = taken_from(b, a_owner) + taken_from(a, lease_state_owner(b))
    bad = {shard for shard, n in twice.items() if n > every * moved[shard]}
    assert not bad, f"{twice} {moved}\n{story({'a': a, 'b': b}, bad)}"
    print(f"handled twice while balancing a busy stream: {sum(twice.values())} "
          f"({len(handed)} hand-offs, {sum(moved.values())} leases taken without one)")  # fmt: skip

    # A dies with records flowing: B takes its leases once they expire and repeats at most what
    # A handled after its last checkpoints.
    feeder = Feeder(kinesis, stream, start=len(first))
    a.logs.wait_for("record", stream=stream, where=lambda e: e["body"] not in first, count=40)
    a.signal(signal.SIGKILL)
    killed = time.monotonic()
    a.wait(10)
    took_over = wait_leases(b, 4, timeout=10 * failover)
    time.sleep(1.0)
    second = feeder.stop() - first
    try:
        wait_seen([a, b], stream, first | second)
    except AssertionError:
        events = [e for e in b.logs.events if e.get("event") != "record"]
        raise AssertionError(f"{lease_state(b)}\n" + "\n".join(map(str, events[-40:]))) from None
    b.stop()
    print(f"takeover after SIGKILL: {took_over - killed:.2f}s with failover_time {failover}s")
    assert sum(taken_from(b, a_owner).values()) >= 2
    after_kill = handled_twice([a, b], stream, second)
    print(f"handled twice after SIGKILL: {dict(after_kill)} (every_records = {every})")
    assert all(n <= every for n in after_kill.values()), after_kill
    assert runs_in_order(b, stream) and runs_in_order(a, stream)


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
