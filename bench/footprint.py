"""Footprint: time to READY=1 and memory of a real `awsd` process, and where the memory goes.

Targets from the product brief: READY ≤ 1 s after start, ≤ 60 MB RSS with every worker running.

`python -m bench footprint` runs the daemon three times: on a minimal config (runtime only), on
configs/local.toml as `make run` does (every worker, and an embedded moto server it spawns and
waits for — the moto child is a separate process and is not counted), and on local.toml with the
endpoint already up (as AWS is for a daemon on EC2 or a Pi). It samples RSS while the daemon
works, and reads PSS and USS (private memory) from /proc/PID/smaps_rollup at the end. READY is
split into "start" (interpreter, imports, config: the daemon's first log line) and the rest.
The daemon is byte-compiled first, as `pip install` leaves it on a real host.
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
import compileall
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
from collections.abc import Callable, Iterator
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


ARENA_ALIGN = 64 << 20  # glibc's per-thread malloc heaps are 64 MiB, aligned to their size
STACK_KB = 8192  # pthread and libuv thread stacks (RLIMIT_STACK, 8 MiB)


def mappings(pid: int) -> dict[str, list[float]]:
    """RSS/PSS/USS in MB per kind of mapping: thread stacks, the threads' malloc heaps, the main C
    heap, other anonymous memory (Python's object arenas, large blocks), libpython, each
    extension package, system libraries."""
    out: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    current = "[anon]"
    start = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split()
            start = int(parts[0].split("-")[0], 16)
            path = parts[5] if len(parts) > 5 else ""
            if "/site-packages/" in path:
                current = "ext: " + path.split("/site-packages/")[1].split("/")[0].split(".")[0]
            elif path == "[heap]":
                current = "[heap] (C heap: main malloc arena)"
            elif path and not path.startswith("["):
                current = "lib: " + path.rsplit("/", 1)[-1].split(".so")[0]
            elif start % ARENA_ALIGN == 0 and not path:
                current = "threads' malloc heaps"
            else:
                current = "[anon] (Python arenas, large blocks)"
            continue
        key, _, value = line.partition(":")
        if key == "Size" and int(value.split()[0]) == STACK_KB and current.startswith("[anon]"):
            current = "thread stacks"
        column = {"Rss": 0, "Pss": 1, "Private_Clean": 2, "Private_Dirty": 2}.get(key)
        if column is not None:
            out[current][column] += int(value.split()[0]) / 1024
    return out


def threads(pid: int) -> collections.Counter[str]:
    return collections.Counter(
        Path(task, "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()
    )


def settle() -> None:
    """What `daemon.runtime.process.settle_memory` does after startup."""
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


def precompile() -> None:
    """Byte-compile the daemon as `pip install` does on a real host: with PYTHONDONTWRITEBYTECODE
    set (as in CI) every start would otherwise compile ~120 modules from source (~0.15 s)."""
    compileall.compile_dir(REPO / "daemon", quiet=1)


@contextlib.contextmanager
def running_endpoint(env: dict[str, str]) -> Iterator[str]:
    """A moto server already up, as AWS is for a daemon on EC2 or a Pi."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.core.local_aws", "127.0.0.1", str(port)],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the child exits when its stdin closes
        proc.wait(30)


def main() -> None:
    seconds = float(os.environ.get("AWSD_BENCH_SECONDS", "20"))
    env = bench_env()
    precompile()
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal.toml"
        minimal.write_text(f'env = "bench"\n[health]\nport = 0\n[runtime]\nstate_dir = "{tmp}"\n')
        rows = [("runtime only", run(minimal, seconds, env))]
        rows.append(
            (
                "local.toml, embedded moto (make run)",
                run(LOCAL, seconds, {**env, "AWSD_STATE_DIR": str(Path(tmp) / "local")}),
            )
        )
        with running_endpoint(env) as endpoint:
            state = {"AWSD_STATE_DIR": str(Path(tmp) / "up"), "AWS_ENDPOINT_URL": endpoint}
            rows.append(("local.toml, AWS already up", run(LOCAL, seconds, {**env, **state})))
    load = os.getloadavg()[0]
    python = sys.version.split()[0]
    print(f"{os.cpu_count()} cpus, load average (1 min) {load:.2f}, python {python}")
    print(
        f"{'config':<38} {'READY s':>8} {'(start)':>8} {'RSS MB':>7} {'peak':>6} "
        f"{'PSS MB':>7} {'USS MB':>7} {'threads':>7}"
    )
    for name, r in rows:
        print(
            f"{name:<38} {r['ready_s']:>8.3f} {r['starting_s']:>8.3f} {r['rss_mb']:>7.1f} "
            f"{r['peak_mb']:>6.1f} {r['pss_mb']:>7.1f} {r['uss_mb']:>7.1f} "
            f"{sum(r['threads'].values()):>7}"
        )
    print("(start): until the first log line (interpreter, imports, config); READY after it")
    print("local.toml runs every worker; the moto server is its own process, not counted")
    print("targets: READY <= 1 s, RSS <= 60 MB with every worker")


# --- the breakdown ---------------------------------------------------------------------------

STEPS: list[tuple[str, str]] = [
    ("asyncio, ssl, uvloop (stdlib + loop)", "import asyncio, ssl, uvloop"),
    ("pydantic (library)", "import pydantic"),
    ("structlog (library)", "import structlog"),
    ("config models (daemon.config: schemas built)", "import daemon.config"),
    ("aiohttp (library)", "import aiohttp, aiohttp.web"),
    ("botocore + aiobotocore + aioboto3 (library)", "import aioboto3, aiobotocore.session"),
    ("daemon runtime (daemon.runtime.app, logs, metrics, outbox)", "import daemon.runtime.app"),
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
    from daemon.core.iam import CLIENT_OF
    from daemon.workers import CATALOG, load_config

    loaded = load_config(LOCAL, {"AWSD_STATE_DIR": tempfile.mkdtemp()})
    report("load configs/local.toml (its entrypoints, cross-checks)")
    # Every service the config's policy names: those warmed at startup and those built on
    # first use (the reconciler's Lambda, CloudFront, EFS, EC2 and IAM calls).
    document = CATALOG.policy(loaded.config)
    prefixes = {
        action.split(":", 1)[0]
        for statement in document["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    wanted = sorted({CLIENT_OF.get(p, p) for p in prefixes})
    asyncio.run(_clients_child(loaded.config, wanted, report))


async def _clients_child(config: Any, wanted: list[str], report: Any) -> None:
    from botocore import xform_name

    from daemon.core.aws import AwsClients

    with socket.socket() as closed:  # a loopback port nobody listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    aws = config.aws.model_copy(update={"max_attempts": 1, "retry_mode": "standard"})
    clients = AwsClients(aws, local_endpoint=endpoint)

    async def first_request(client: Any) -> None:
        # Builds the client's HTTP connector and TLS context, as its first real call would.
        name = client.meta.service_model.operation_names[0]
        call = getattr(client, xform_name(name))
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
    precompile()
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
    for name, (rss, pss, uss) in maps[:14]:
        print(f"{name:<40} {rss:>7.1f} {pss:>7.1f} {uss:>7.1f}")
    rest = [sum(v[i] for _, v in maps[14:]) for i in range(3)]
    print(f"{'(the rest)':<40} {rest[0]:>7.1f} {rest[1]:>7.1f} {rest[2]:>7.1f}")


# --- inside the daemon: Python's share, pymalloc, SQLite ----------------------------------------


def pymalloc_stats() -> dict[str, float]:
    """pymalloc's arenas against the bytes in live blocks (the rest: fragmentation), in MB."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(write)
        os.close(saved)
    with os.fdopen(read) as stream:
        text = stream.read()

    def number(label: str) -> float:
        found = re.search(rf"{re.escape(label)}\s*=\s*([\d,]+)", text)
        return int(found.group(1).replace(",", "")) / 2**20 if found else float("nan")

    arenas = re.search(r"(\d+) arenas \* (\d+) bytes/arena", text)
    total = int(arenas.group(1)) * int(arenas.group(2)) / 2**20 if arenas else float("nan")
    return {"arenas": total, "in_blocks": number("# bytes in allocated blocks")}


def sqlite_memory() -> float:
    """Memory the SQLite library holds, every connection's page cache included, in MB."""
    lib = ctypes.CDLL("libsqlite3.so.0")
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    lib.sqlite3_status64(0, ctypes.byref(current), ctypes.byref(highest), 0)  # MEMORY_USED
    return current.value / 2**20


def _inside_child(seconds: float, trace: bool) -> None:
    import tracemalloc

    if trace:
        tracemalloc.start(1)
    sys.path.insert(0, str(REPO))
    from daemon.cli.common import run_async
    from daemon.core.logs import configure_logging
    from daemon.runtime.app import Daemon
    from daemon.workers import load_config

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
        if trace:
            for stat in tracemalloc.take_snapshot().statistics("filename"):
                by_package[_package_of(stat.traceback[0].filename)] += stat.size
        found = {
            "rss": rollup()["rss"],
            "traced": dict(by_package),
            "pymalloc": pymalloc_stats(),
            "sqlite": sqlite_memory(),
        }
        print(json.dumps(found), flush=True)
        daemon.request_stop()
        return await task

    run_async(measure())


def _package_of(path: str) -> str:
    if "/site-packages/" in path:
        return path.split("/site-packages/")[1].split("/", maxsplit=1)[0].removesuffix(".py")
    if f"{REPO}/daemon/" in path:
        return "daemon." + path.split(f"{REPO}/daemon/")[1].split("/", maxsplit=1)[0].removesuffix(
            ".py"
        )
    if path.startswith("<frozen importlib"):
        return "(code objects of imported modules)"
    return "stdlib " + Path(path).name


def _inside(trace: bool) -> dict[str, Any]:
    code = f"import bench.footprint as f; f._inside_child(8, {trace})"
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={**bench_env(), "AWSD_STATE_DIR": tmp},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    found: dict[str, Any] = json.loads(
        next(line for line in out.splitlines() if line.startswith('{"rss"'))
    )
    return found


def inside(trace: bool) -> None:
    found = _inside(trace=False)  # pymalloc keeps no statistics while tracemalloc hooks it
    pym = found["pymalloc"]
    print(
        f"\ninside the daemon on configs/local.toml (steady state): pymalloc arenas "
        f"{pym['arenas']:.1f} MB, {pym['in_blocks']:.1f} MB of it in live objects "
        f"({pym['arenas'] - pym['in_blocks']:.1f} MB free or fragmented); SQLite "
        f"(all connections, page caches included) {found['sqlite']:.2f} MB"
    )
    if not trace:
        return
    found = _inside(trace=True)
    total = sum(found["traced"].values()) / 2**20
    print(f"tracemalloc: {total:.1f} MB allocated by Python, by package")
    print(f"(RSS {found['rss']:.1f} MB here includes tracemalloc's own bookkeeping)")
    for name, size in collections.Counter(found["traced"]).most_common(15):
        print(f"  {name:<44} {size / 2**20:>6.2f} MB")


# --- each worker: local.toml without it -----------------------------------------------------------


def _drop(*keys: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        for key in keys:
            section, _, sub = key.partition(".")
            (data[section].pop(sub, None) if sub else data.pop(section, None))

    return change


def _reconciler_off(data: dict[str, Any]) -> None:
    data["resources"]["mode"] = "off"  # still declared: the others name them


WITHOUT: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("Kinesis reader + demo producer + S3 archive", _drop("kinesis", "custom")),
    ("probes", _drop("probes")),
    ("SQS poller", _drop("sqs")),
    ("SNS publisher", _drop("sns")),
    ("reconciler", _reconciler_off),
    ("metrics exporters (CloudWatch, EMF)", _drop("metrics")),
    ("CloudWatch Logs shipper", _drop("log.cloudwatch")),
]


def without_each() -> None:
    """RSS of local.toml, then of local.toml without each worker (the endpoint stays up, so the
    resources the reconciler created are still there for the others)."""
    import tomllib

    import tomli_w

    env = bench_env()
    # The archive's S3 client comes with its first flush (30 s): sample past it.
    seconds = max(40.0, float(os.environ.get("AWSD_BENCH_SECONDS", "40")))
    full = tomllib.loads(LOCAL.read_text())
    full["extends"] = str(REPO / "configs" / full["extends"])
    with tempfile.TemporaryDirectory() as tmp, running_endpoint(env) as endpoint:
        env = {**env, "AWS_ENDPOINT_URL": endpoint, "AWSD_STATE_DIR": tmp}
        base = run(LOCAL, seconds, env)
        print(f"\neach worker's cost: local.toml ({base['rss_mb']:.1f} MB RSS) without it")
        print(f"{'without':<46} {'RSS MB':>7} {'saves':>6} {'USS MB':>7} {'saves':>6}")
        for name, change in WITHOUT:
            data = json.loads(json.dumps(full))
            change(data)
            path = Path(tmp) / "variant.toml"
            path.write_text(tomli_w.dumps(data))
            r = run(path, seconds, env)
            print(
                f"{name:<46} {r['rss_mb']:>7.1f} {base['rss_mb'] - r['rss_mb']:>6.1f} "
                f"{r['uss_mb']:>7.1f} {base['uss_mb'] - r['uss_mb']:>6.1f}"
            )


if __name__ == "__main__":
    if "--breakdown" in sys.argv:
        breakdown()
        inside(trace="--tracemalloc" in sys.argv)
    if "--workers" in sys.argv:
        without_each()
    if not {"--breakdown", "--workers"} & set(sys.argv):
        main()
