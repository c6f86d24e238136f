"""Kinesis reading behind an emulated network round trip: the simple loop, async-kinesis (from
PyPI) and the awsd reader, side by side on one moto server and one 4-shard stream.

    python -m bench kinesis [--rtt 0,20,60] [--records 20000]

The stream is preloaded once with JSON records (~70 bytes); every consumer reads all of it from
TRIM_HORIZON, in its own process, through `bench/latency.py` (a TCP proxy holding each chunk for
half the round trip each way; the same proxy for every consumer of one round trip), and decodes
every record as JSON, as its users would. Reported per round trip: records/s and CPU per record
of the consumer's process, both from its first call to its last record (start-up and imports
excluded), and the CPU use of moto and of the proxy over the same span, as a share of one core
(moto near 100 % means moto is the ceiling, not the consumer).

async-kinesis needs aiobotocore 3 while awsd's aioboto3 pins 2, so it is installed into its own
virtualenv under `.venv/bench-async-kinesis` on first run. moto scans a shard from its first
record on every GetRecords, so more records mostly measure moto.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.latency import Proxy, cpu_seconds, parse_rtts

REPO = Path(__file__).resolve().parents[1]
AK_VENV = REPO / ".venv" / "bench-async-kinesis"
SIMPLE_BUDGET = 10.0


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


def _async_kinesis_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('async-kinesis'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


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


def _contenders(ak_python: str | None) -> list[tuple[str, str, str, str]]:
    """(label, python, consumer name, its extra argument)."""
    found: list[tuple[str, str, str, str]] = [
        (
            f"simple loop (Limit=2, one shard at a time, {SIMPLE_BUDGET:g} s budget)",
            sys.executable,
            "simple",
            str(SIMPLE_BUDGET),
        ),
    ]
    if ak_python:
        version = _async_kinesis_version(ak_python)
        found += [
            (
                f"async-kinesis {version} (defaults: 1 fetch/s per shard)",
                ak_python,
                "async-kinesis",
                "1",
            ),
            (f"async-kinesis {version} (shard_fetch_rate=5)", ak_python, "async-kinesis", "5"),
        ]
    found += [
        ("awsd reader (defaults: max_records=1000)", sys.executable, "awsd", "1000"),
        ("awsd reader (max_records=10000)", sys.executable, "awsd", "10000"),
    ]
    return found


def _measure(
    moto: subprocess.Popen[bytes],
    proxy: Proxy,
    python: str,
    name: str,
    label: str,
    *,
    stream: str,
    count: int,
    extra: str,
) -> dict[str, Any]:
    moto_cpu, proxy_cpu = cpu_seconds(moto.pid), proxy.cpu()
    got = _run(python, name, endpoint=proxy.url, stream=stream, count=count, extra=extra)
    moto_cpu, proxy_cpu = cpu_seconds(moto.pid) - moto_cpu, proxy.cpu() - proxy_cpu
    seconds = got["seconds"]
    return {
        "label": label,
        "name": name,
        "records": got["records"],
        "rate": got["records"] / seconds,
        "cpu_us": got["cpu"] / max(1, got["records"]) * 1e6,
        # moto and the proxy are read around the whole process; they idle while it starts up
        # (imports), so their CPU is the read's, over the read's span.
        "moto": moto_cpu / seconds,
        "moto_us": moto_cpu / max(1, got["records"]) * 1e6,
        "proxy": proxy_cpu / seconds,
    }


def run_rtt(
    moto: subprocess.Popen[bytes],
    endpoint: str,
    stream: str,
    *,
    count: int,
    rtt: float,
    ak: str | None,
    repeat: int,
) -> list[dict[str, Any]]:
    proxy = Proxy(endpoint, rtt)
    runs: dict[str, list[dict[str, Any]]] = {}
    contenders = _contenders(ak)
    print(f"\nround trip {rtt:g} ms (median of {repeat} runs, interleaved; simple loop once)")
    try:
        for turn in range(repeat):
            for label, python, name, extra in contenders:
                if name == "simple" and turn:
                    continue
                runs.setdefault(label, []).append(
                    _measure(
                        moto, proxy, python, name, label, stream=stream, count=count, extra=extra
                    )
                )
    finally:
        proxy.stop()
    results = []
    for label, *_ in contenders:
        ordered = sorted(runs[label], key=lambda r: r["rate"])
        row = {**ordered[len(ordered) // 2], "low": ordered[0]["rate"], "high": ordered[-1]["rate"]}
        results.append(row)
        print(
            f"  {label:<58} {row['rate']:>7.0f} rec/s ({row['low']:.0f}-{row['high']:.0f}) "
            f"{row['cpu_us']:>6.1f} µs CPU/rec  moto {min(row['moto'], 9.99) * 100:3.0f}% "
            f"{row['moto_us']:5.1f} µs/rec  proxy {min(row['proxy'], 9.99) * 100:3.0f}%",
            flush=True,
        )
    by = {r["label"]: r for r in results}
    awsd_default = next(r for r in results if r["name"] == "awsd")
    ak_rows = [r for r in results if r["name"] == "async-kinesis"]
    if ak_rows:
        ak_default = ak_rows[0]
        best_awsd = max((r for r in results if r["name"] == "awsd"), key=lambda r: r["rate"])
        best_ak = max(ak_rows, key=lambda r: r["rate"])
        print(
            f"  awsd / async-kinesis, defaults: {awsd_default['rate'] / ak_default['rate']:.1f}x "
            f"records/s, {ak_default['cpu_us'] / awsd_default['cpu_us']:.1f}x less CPU per record;"
            f" best of each: {best_awsd['rate'] / best_ak['rate']:.1f}x, "
            f"{best_ak['cpu_us'] / best_awsd['cpu_us']:.1f}x less CPU"
        )
    simple = next(iter(by.values()))
    print(
        f"  awsd (defaults) / simple loop: {awsd_default['rate'] / simple['rate']:.0f}x records/s"
    )
    served = [r for r in results if r["name"] != "simple"]
    moto_us = sum(r["moto_us"] for r in served) / max(1, len(served))
    print(
        f"  moto's ceiling: {moto_us:.0f} µs of its CPU per record served (mean of the readers),"
        f" so at most {1e6 / moto_us:,.0f} records/s on one core (its Python uses one at a time)"
    )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench kinesis")
    parser.add_argument("--rtt", default="0,20,60", help="round trips to emulate, in ms")
    parser.add_argument(
        "--records", type=int, default=int(os.environ.get("BENCH_KINESIS_RECORDS", "20000"))
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per reader (median shown)")
    args = parser.parse_args(argv or [])
    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(key, value)
    rtts = parse_rtts(args.rtt)
    print(
        f"one moto server; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
        f"a 4-shard stream of {args.records} JSON records; round trips "
        f"{', '.join(f'{r:g}' for r in rtts)} ms",
        flush=True,
    )
    moto, endpoint = _moto()
    try:
        ak_python = _async_kinesis_python()
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        _preload(endpoint, stream, args.records)
        for rtt in rtts:
            run_rtt(
                moto,
                endpoint,
                stream,
                count=args.records,
                rtt=rtt,
                ak=ak_python,
                repeat=args.repeat,
            )
    finally:
        assert moto.stdin is not None
        moto.stdin.close()
        moto.wait(10)


if __name__ == "__main__":
    main(sys.argv[1:])
