"""Footprint: time to READY=1 and memory of a real `awsd` process, and where the memory goes.

Targets from the product brief: READY ≤ 1 s after start, ≤ 60 MB RSS with every worker running.

`python -m bench footprint` runs the daemon twice: on a minimal config (runtime only) and on
configs/local.toml (every worker, embedded moto — the moto child is a separate process and is not
counted), sampling RSS while it works, and reads PSS and USS (private memory) from
/proc/PID/smaps_rollup at the end. READY is split into "starting" (interpreter, imports, config:
the daemon's first log line) and the rest (local endpoint, startup reconcile pass, workers).
Set AWSD_BENCH_SECONDS to sample longer (default 20).

`python -m bench.footprint --breakdown` says where the memory goes, each figure measured after
`gc.collect()` + `malloc_trim(0)` as the daemon settles after startup:
- in one fresh process, step by step: the interpreter, each library awsd must use, the config
  models, the daemon's own modules, loading configs/local.toml, then each AWS client local.toml
  uses, each after one request (which builds its HTTP connector and TLS context);
- in the running daemon on local.toml: RSS/PSS/USS by mapping (Python's object arenas, the C heap,
  shared libraries), threads.
`--tracemalloc` adds the Python-allocated share at steady state, by package (an in-process run of
the daemon on local.toml; slower).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "configs/local.toml"


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def rollup(pid: int | str = "self") -> dict[str, float]:
    """RSS, PSS, USS (private clean + dirty) and anonymous memory in MB."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        kb[name] = int(value.split()[0])
    return {
        "rss": kb["Rss"] / 1024,
        "pss": kb["Pss"] / 1024,
        "uss": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024,
        "anon": kb["Anonymous"] / 1024,
    }


def mappings(pid: int) -> dict[str, list[float]]:
    """RSS/PSS/USS in MB per kind of mapping: Python's arenas and other anonymous memory, the C
    heap, libpython, each extension package, system libraries."""
    out: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    current = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split()
            path = parts[5] if len(parts) > 5 else "[anon]"
            if "/site-packages/" in path:
                current = "ext: " + path.split("/site-packages/")[1].split("/")[0].split(".")[0]
            elif path.startswith("["):
                current = "[anon]" if path.startswith("[stack") else path
            else:
                current = "lib: " + path.rsplit("/", 1)[-1].split(".so")[0]
            continue
        key, _, value = line.partition(":")
        column = {"Rss": 0, "Pss": 1, "Private_Clean": 2, "Private_Dirty": 2}.get(key)
        if column is not None:
            out[current][column] += int(value.split()[0]) / 1024
    return out


def threads(pid: int) -> collections.Counter[str]:
    return collections.Counter(
        Path(task, "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()
    )


def settle() -> None:
    """What `daemon.app.settle_memory` does after startup."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


# --- the real process ------------------------------------------------------------------------


def run(config: Path, seconds: float, env: dict[str, str]) -> dict[str, Any]:
    sock_dir = tempfile.mkdtemp(prefix="awsd-fp-")
    address = os.path.join(sock_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    log_path = Path(sock_dir) / "log"
    began_wall, began = time.time(), time.monotonic()
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(config)],
            cwd=REPO,
            env={**env, "NOTIFY_SOCKET": address},
            stdout=log_file,
            stderr=subprocess.DEVNULL,
        )
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.monotonic() - began
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(rss_mb(proc.pid)[0])
            time.sleep(0.5)
        peak = rss_mb(proc.pid)[1]
        mem = rollup(proc.pid)
        tasks = threads(proc.pid)
        maps = mappings(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        sock.close()
    return {
        "ready_s": ready,
        "starting_s": _first_log_at(log_path) - began_wall,
        "rss_mb": max(samples),
        "peak_mb": peak,
        "pss_mb": mem["pss"],
        "uss_mb": mem["uss"],
        "threads": tasks,
        "mappings": maps,
    }


def _first_log_at(path: Path) -> float:
    for line in path.read_text().splitlines():
        with_time = json.loads(line).get("timestamp") if line.startswith("{") else None
        if with_time:
            return datetime.fromisoformat(with_time.replace("Z", "+00:00")).timestamp()
    return float("nan")


def bench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS", "NOTIFY"))}
    env.update(AWS_EC2_METADATA_DISABLED="true", PYTHONPATH=str(REPO))
    return env


def main() -> None:
    seconds = float(os.environ.get("AWSD_BENCH_SECONDS", "20"))
    env = bench_env()
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal.toml"
        minimal.write_text(f'env = "bench"\n[health]\nport = 0\n[runtime]\nstate_dir = "{tmp}"\n')
        env_local = {**env, "AWSD_STATE_DIR": str(Path(tmp) / "local")}
        rows = [
            ("runtime only", run(minimal, seconds, env)),
            ("configs/local.toml (every worker)", run(LOCAL, seconds, env_local)),
        ]
    load = os.getloadavg()[0]
    python = sys.version.split()[0]
    print(f"{os.cpu_count()} cpus, load average (1 min) {load:.2f}, python {python}")
    print(
        f"{'config':<36} {'READY s':>8} {'(start)':>8} {'RSS MB':>7} {'peak':>6} "
        f"{'PSS MB':>7} {'USS MB':>7} {'threads':>7}"
    )
    for name, r in rows:
        print(
            f"{name:<36} {r['ready_s']:>8.3f} {r['starting_s']:>8.3f} {r['rss_mb']:>7.1f} "
            f"{r['peak_mb']:>6.1f} {r['pss_mb']:>7.1f} {r['uss_mb']:>7.1f} "
            f"{sum(r['threads'].values()):>7}"
        )
    print("(start): until the first log line (interpreter, imports, config); READY after it")
    print("targets: READY <= 1 s, RSS <= 60 MB with every worker")


# --- the breakdown ---------------------------------------------------------------------------

STEPS: list[tuple[str, str]] = [
    ("asyncio, ssl, uvloop (stdlib + loop)", "import asyncio, ssl, uvloop"),
    ("pydantic (library)", "import pydantic"),
    ("structlog (library)", "import structlog"),
    ("config models (daemon.config: schemas built)", "import daemon.config"),
    ("aiohttp (library)", "import aiohttp, aiohttp.web"),
    ("botocore + aiobotocore + aioboto3 (library)", "import aioboto3, aiobotocore.session"),
    ("daemon runtime (daemon.app, logs, metrics, outbox)", "import daemon.app"),
]


# Runs in a fresh interpreter (`python -c`), importing nothing before its first figure, so the
# first line is the bare interpreter: one JSON line per step, after settling as the daemon does.
STEPS_CHILD = """
import ctypes, gc, json, sys
sys.path.insert(0, {repo!r})

def report(step):
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    kb = dict(line.split(":", 1) for line in open("/proc/self/smaps_rollup").readlines()[1:])
    mb = lambda name: int(kb[name].split()[0]) / 1024
    uss = mb("Private_Clean") + mb("Private_Dirty")
    print(json.dumps({{"step": step, "rss": mb("Rss"), "uss": uss}}), flush=True)

report("python interpreter (site, encodings)")
for name, statement in {steps!r}:
    exec(statement, {{}})
    report(name)
import bench.footprint
bench.footprint.clients_child(report)
"""


def clients_child(report: Any) -> None:
    """The second half of STEPS_CHILD: load local.toml, then each AWS client it uses."""
    from daemon.config import load_config
    from daemon.iam import services

    loaded = load_config(LOCAL, {"AWSD_STATE_DIR": tempfile.mkdtemp()})
    report("load configs/local.toml (its entrypoints, cross-checks)")
    wanted = sorted(services(loaded.config))
    asyncio.run(_clients_child(loaded.config, wanted, report))


async def _clients_child(config: Any, wanted: list[str], report: Any) -> None:
    from daemon.aws import AwsClients

    with socket.socket() as closed:  # a loopback port nobody listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    aws = config.aws.model_copy(update={"max_attempts": 1, "retry_mode": "standard"})
    clients = AwsClients(aws, local_endpoint=endpoint)

    async def first_request(client: Any) -> None:
        # Builds the client's HTTP connector and TLS context, as its first real call would.
        name = client.meta.service_model.operation_names[0]
        call = getattr(client, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower())
        with contextlib.suppress(Exception):  # refused, or invalid without arguments: either
            await call()

    for i, service in enumerate(wanted):
        await first_request(await clients.client(service))
        report(f"AWS client: {service}" + (" (+ endpoints.json, shared)" if i == 0 else ""))
    await first_request(await clients.client("sqs", read_timeout=config.aws.read_timeout + 25))
    report("AWS client: sqs long poll (own read timeout)")
    await clients.close()


def breakdown() -> None:
    env = bench_env()
    out = subprocess.run(
        [sys.executable, "-c", STEPS_CHILD.format(repo=str(REPO), steps=STEPS)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    print(f"{'component (cumulative, one process)':<56} {'RSS +MB':>8} {'USS +MB':>8} {'RSS':>6}")
    previous: dict[str, float] = {"rss": 0.0, "uss": 0.0}
    for row in rows:
        print(
            f"{row['step']:<56} {row['rss'] - previous['rss']:>8.1f} "
            f"{row['uss'] - previous['uss']:>8.1f} {row['rss']:>6.1f}"
        )
        previous = row
    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            LOCAL,
            float(os.environ.get("AWSD_BENCH_SECONDS", "10")),
            {**env, "AWSD_STATE_DIR": tmp},
        )
    print(
        f"\nrunning daemon, configs/local.toml: RSS {result['rss_mb']:.1f} MB, PSS "
        f"{result['pss_mb']:.1f}, USS {result['uss_mb']:.1f}; threads: "
        + ", ".join(f"{n} {name}" for name, n in sorted(result["threads"].items()))
    )
    print(f"{'mapping':<40} {'RSS MB':>7} {'PSS MB':>7} {'USS MB':>7}")
    maps = sorted(result["mappings"].items(), key=lambda kv: -kv[1][0])
    for name, (rss, pss, uss) in maps[:12]:
        print(f"{name:<40} {rss:>7.1f} {pss:>7.1f} {uss:>7.1f}")
    rest = [sum(v[i] for _, v in maps[12:]) for i in range(3)]
    print(f"{'(the rest)':<40} {rest[0]:>7.1f} {rest[1]:>7.1f} {rest[2]:>7.1f}")
    print("[anon]: Python's object arenas, thread stacks, large buffers; [heap]: the C heap")


# --- tracemalloc: the Python-allocated share ---------------------------------------------------


def _traced_child(seconds: float) -> None:
    import tracemalloc

    tracemalloc.start(1)
    sys.path.insert(0, str(REPO))
    from daemon.app import Daemon
    from daemon.cli import run_async
    from daemon.config import load_config
    from daemon.logs import configure_logging

    loaded = load_config(LOCAL)
    configure_logging(loaded.config.log)
    daemon = Daemon(loaded)

    async def measure() -> int:
        task = asyncio.create_task(daemon.run())
        while daemon.state != "running":
            await asyncio.sleep(0.05)
        await asyncio.sleep(seconds)
        settle()
        by_package: collections.Counter[str] = collections.Counter()
        for stat in tracemalloc.take_snapshot().statistics("filename"):
            path = stat.traceback[0].filename
            if "/site-packages/" in path:
                key = path.split("/site-packages/")[1].split("/")[0].removesuffix(".py")
            elif f"{REPO}/daemon/" in path:
                key = "daemon." + path.split(f"{REPO}/daemon/")[1].split("/")[0].removesuffix(".py")
            elif path.startswith("<frozen importlib"):
                key = "(code objects of imported modules)"
            else:
                key = "stdlib " + Path(path).name
            by_package[key] += stat.size
        print(json.dumps({"rss": rollup()["rss"], "traced": dict(by_package)}), flush=True)
        daemon.request_stop()
        return await task

    run_async(measure())


def traced() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", "import bench.footprint as f; f._traced_child(8)"],
            cwd=REPO,
            env={**bench_env(), "AWSD_STATE_DIR": tmp},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    found = json.loads(next(line for line in out.splitlines() if line.startswith('{"rss"')))
    total = sum(found["traced"].values()) / 2**20
    print(f"\ntracemalloc, configs/local.toml at steady state: {total:.1f} MB allocated by Python")
    print(f"(RSS {found['rss']:.1f} MB includes tracemalloc's own bookkeeping)")
    for name, size in collections.Counter(found["traced"]).most_common(15):
        print(f"  {name:<44} {size / 2**20:>6.2f} MB")


if __name__ == "__main__":
    if "--breakdown" in sys.argv:
        breakdown()
    if "--tracemalloc" in sys.argv:
        traced()
    if not {"--breakdown", "--tracemalloc"} & set(sys.argv):
        main()
