"""Kinesis checkpoints: what `checkpoints.every_records` / `every_seconds` cost in writes, and
what they save in records handled twice after a SIGKILL.

    python -m bench kinesis_checkpoints [--rate 200] [--seconds 15]

For each setting: a real `awsd run` process reads a busy 4-shard stream on a local moto server
(a producer process puts `--rate` records per second per shard), its handler appends every
record's shard and sequence number to a file (unbuffered: what the handler did survives the
kill); after about `--seconds` the daemon is SIGKILLed and started again on the same state
directory, three times, then left to catch up. Reported per setting: checkpoint writes per shard
per hour (the daemon's `awsd_kinesis_checkpoints_total` over its runs: SQLite commits, or with
`store = "dynamodb"` one conditional UpdateItem each), and the records each shard handled again
after each restart (twelve samples: mean, median, largest). The restart repeats what each
shard handled since its last checkpoint: at most `every_records`, or what arrives in
`every_seconds`, whichever is fewer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.sqs import Daemon, Moto, _boto, _env, _get

REPO = Path(__file__).resolve().parents[1]
SHARDS = 4
KILLS = 3
"""SIGKILLs per setting (each shard of each one is a sample)."""
SETTINGS: list[tuple[int, float]] = [(100, 10.0), (1000, 1.0), (1000, 10.0), (10000, 10.0)]
"""(every_records, every_seconds); (1000, 10) are the defaults."""

_OUT: list[int] = []


async def record(rec: Any) -> None:
    """The daemon's handler: one line per record, written at once (O_APPEND, no buffer)."""
    if not _OUT:
        _OUT.append(os.open(os.environ["BENCH_CHECKPOINTS_OUT"], os.O_WRONLY | os.O_APPEND))
    os.write(_OUT[0], f"{rec.meta['shard']} {rec.meta['sequence']}\n".encode())


def producer(endpoint: str, stream: str, rate: str) -> None:
    """Puts `rate` records per second per shard, in ten calls a second, until killed."""
    kinesis = _boto("kinesis", endpoint)
    per_call = max(1, int(float(rate)) * SHARDS // 10)
    n, next_call = 0, time.monotonic()
    while True:
        records = [
            {"PartitionKey": f"sensor-{(n + i) % 97}", "Data": json.dumps({"n": n + i}).encode()}
            for i in range(per_call)
        ]
        kinesis.put_records(StreamName=stream, Records=records)
        n += per_call
        next_call += 0.1
        time.sleep(max(0.0, next_call - time.monotonic()))


class _Awsd(Daemon):
    """`Daemon` with the handler's output file in its environment."""

    def __init__(self, endpoint: str, sections: str, state: Path, out: Path) -> None:
        os.environ["BENCH_CHECKPOINTS_OUT"] = str(out)
        try:
            super().__init__(endpoint, sections, state)
        finally:
            del os.environ["BENCH_CHECKPOINTS_OUT"]

    def checkpoints(self) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        text = _get(f"{self.base}/metrics").decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "awsd_kinesis_checkpoints"
            for sample in family.samples
            if sample.name == "awsd_kinesis_checkpoints_total"
        )


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def run_setting(
    moto: Moto,
    state: Path,
    every_records: int,
    every_seconds: float,
    *,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    stream = f"ckpt-{every_records}-{every_seconds:g}-{os.getpid()}"
    kinesis = _boto("kinesis", moto.endpoint)
    kinesis.create_stream(StreamName=stream, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    out = state / f"{stream}.handled"
    out.touch()
    sections = (
        f'[resources]\nmode = "off"\n[resources.streams.s]\nname = "{stream}"\n'
        f'[kinesis.readers.r]\nstream = "s"\ndecoder = "bytes"\n'
        'handler = { kind = "python", entrypoint = "bench.kinesis_checkpoints:record" }\n'
        f"checkpoints = {{ every_records = {every_records}, every_seconds = {every_seconds} }}\n"
    )
    feeder = subprocess.Popen(
        [sys.executable, "-m", "bench.kinesis_checkpoints", "producer", moto.endpoint, stream,
         str(rate)],
        cwd=REPO,
        env=_env(),
    )  # fmt: skip
    # Kills at different points of the checkpoint cycle (seeded: the same ones every run).
    rng = random.Random(every_records * 1000 + int(every_seconds))
    writes = ran = 0.0
    ends: list[int] = []  # lines handled when each kill came
    try:
        for _ in range(KILLS):
            daemon = _Awsd(moto.endpoint, sections, state / stream, out)
            began = time.monotonic()
            time.sleep(seconds * rng.uniform(0.75, 1.25))
            writes += daemon.checkpoints()
            ran += time.monotonic() - began
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(10)
            ends.append(len(_lines(out)))
        last = _Awsd(moto.endpoint, sections, state / stream, out)
        try:
            time.sleep(3.0)  # catch up with what arrived while it was down
            feeder.kill()
            feeder.wait()
            settled, count = time.monotonic(), -1
            while (now := len(_lines(out))) != count or time.monotonic() - settled < 2.0:
                if now != count:
                    settled, count = time.monotonic(), now
                time.sleep(0.2)
        finally:
            last.stop()
    finally:
        if feeder.poll() is None:
            feeder.kill()
            feeder.wait()
    lines = _lines(out)
    samples: list[int] = []
    for kill, end in enumerate(ends):
        before = set(lines[:end])
        after = lines[end : ends[kill + 1] if kill + 1 < len(ends) else len(lines)]
        twice = Counter(line.split()[0] for line in after if line in before)
        samples += [twice.get(f"shardId-{i:012d}", 0) for i in range(SHARDS)]
    samples.sort()
    return {
        "every_records": every_records,
        "every_seconds": every_seconds,
        "writes_per_shard_hour": writes / SHARDS / ran * 3600,
        "twice_mean": sum(samples) / len(samples),
        "twice_median": samples[len(samples) // 2],
        "twice_max": samples[-1],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench kinesis_checkpoints")
    parser.add_argument("--rate", type=float, default=200.0, help="records/s per shard")
    parser.add_argument("--seconds", type=float, default=15.0, help="run time before a SIGKILL")
    args = parser.parse_args(argv or [])
    print(
        f"one moto server; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
        f"{SHARDS} shards, {args.rate:g} records/s per shard; {KILLS} SIGKILLs per setting, "
        f"each after {args.seconds * 0.75:g}-{args.seconds * 1.25:g} s; SQLite checkpoints",
        flush=True,
    )
    moto = Moto()
    try:
        with tempfile.TemporaryDirectory(prefix="awsd-bench-") as tmp:
            print(
                f"  {'every_records':>13} {'every_seconds':>13} {'writes/shard/hour':>18}   "
                f"records handled twice per shard and SIGKILL: mean, median, max"
            )
            for every_records, every_seconds in SETTINGS:
                r = run_setting(
                    moto,
                    Path(tmp),
                    every_records,
                    every_seconds,
                    rate=args.rate,
                    seconds=args.seconds,
                )
                print(
                    f"  {r['every_records']:>13} {r['every_seconds']:>13g} "
                    f"{r['writes_per_shard_hour']:>18.0f}   {r['twice_mean']:6.0f} "
                    f"{r['twice_median']:6} {r['twice_max']:6}",
                    flush=True,
                )
    finally:
        moto.stop()


if __name__ == "__main__":
    roles = {"producer": producer}
    roles[sys.argv[1]](*sys.argv[2:])
