"""Kinesis reading, side by side on one local moto server and one 4-shard stream preloaded with
JSON records: lesson 22's consumer loop, async-kinesis (from PyPI) and the awsd reader.

Each consumer runs in its own process from TRIM_HORIZON and decodes every record as JSON; we
report records/s and CPU per record of that process, both from the first call to the last record.
async-kinesis needs aiobotocore 3 while awsd's aioboto3 pins 2, so it is installed into its own
virtualenv under `.venv/bench-async-kinesis` on first run. Records: BENCH_KINESIS_RECORDS
(default 20000: moto scans a whole shard per GetRecords, so more records mostly measure moto).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
AK_VENV = REPO / ".venv" / "bench-async-kinesis"


def _moto() -> tuple[subprocess.Popen[bytes], str]:
    from daemon.core.local_aws import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.core.local_aws", "127.0.0.1", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def _preload(endpoint: str, stream: str, count: int) -> None:
    import boto3

    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    kinesis.create_stream(StreamName=stream, ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    for start in range(0, count, 500):
        kinesis.put_records(
            StreamName=stream,
            Records=[
                {
                    "PartitionKey": f"sensor-{n % 64}",
                    "Data": json.dumps(
                        {"sensor": f"sensor-{n % 64}", "n": n, "value": n * 0.5, "unit": "C"}
                    ).encode(),
                }
                for n in range(start, min(count, start + 500))
            ],
        )


def _async_kinesis_python() -> str | None:
    python = AK_VENV / "bin" / "python"
    if python.exists():
        return str(python)
    print("installing async-kinesis into .venv/bench-async-kinesis (first run only)...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(AK_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "async-kinesis",
            ],
            check=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"async-kinesis unavailable ({exc}); skipping it")
        return None
    return str(python)


def _run(
    python: str, name: str, *, endpoint: str, stream: str, count: int, extra: str
) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [python, "-m", "bench.kinesis_consumers", name, endpoint, stream, str(count), extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=env,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"{name} failed with status {proc.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def main() -> None:
    count = int(os.environ.get("BENCH_KINESIS_RECORDS", "20000"))
    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(key, value)
    moto, endpoint = _moto()
    try:
        ak_python = _async_kinesis_python()
        contenders: list[tuple[str, str, str, str]] = [
            (
                "course loop (Limit=2, one shard at a time, 20 s budget)",
                sys.executable,
                "course",
                "20",
            ),
        ]
        if ak_python:
            contenders += [
                (
                    "async-kinesis 3.0.1 (defaults: 1 fetch/s per shard)",
                    ak_python,
                    "async-kinesis",
                    "1",
                ),
                ("async-kinesis 3.0.1 (shard_fetch_rate=5)", ak_python, "async-kinesis", "5"),
            ]
        contenders += [
            ("awsd reader (defaults: max_records=1000)", sys.executable, "awsd", "1000"),
            ("awsd reader (max_records=10000)", sys.executable, "awsd", "10000"),
        ]
        results = []
        for label, python, name, extra in contenders:
            stream = f"bench-{uuid.uuid4().hex[:8]}"
            _preload(endpoint, stream, count)
            got = _run(python, name, endpoint=endpoint, stream=stream, count=count, extra=extra)
            rate = got["records"] / got["seconds"]
            cpu_us = got["cpu"] / max(1, got["records"]) * 1e6
            results.append((label, name, got["records"], rate, cpu_us))
            print(
                f"{label:<58} {got['records']:>7} records {rate:>10.0f} rec/s "
                f"{cpu_us:>8.1f} µs CPU/record",
                flush=True,
            )
    finally:
        assert moto.stdin is not None
        moto.stdin.close()
        moto.wait(10)
    best = {n: max((r for r in results if r[1] == n), key=lambda r: r[3]) for _, n, *_ in results}
    awsd = best["awsd"]
    print()
    for name in ("course", "async-kinesis"):
        if name in best:
            other = best[name]
            print(
                f"awsd vs {name}: {awsd[3] / other[3]:.1f}x records/s, "
                f"{other[4] / awsd[4]:.1f}x less CPU per record (best configuration of each)"
            )


if __name__ == "__main__":
    main()
