"""Probe engine: 1000 endpoints every 10 s on one core, start lateness, and a blackhole.

Runs the real probe worker (scheduler, HTTP probe with phase timings and fresh connections,
conditions, history, metrics, alert state machine, state store) against a local aiohttp server in
a separate process (its CPU is not counted), for AWSD_BENCH_PROBES_SECONDS (default 60) per run:
1. all 1000 endpoints healthy;
2. the same with 100 of them pointing at a listener that accepts and never answers (each of
   those checks runs into its timeout), to show the other endpoints' lateness does not move.
Reports CPU % of one core of the probing process, CPU per check, and start lateness
p50/p99/max; then the simple loop (`requests.get(url).elapsed`, one after the other) for the
CPU per check it costs. Goals: at most 10 % of one core, lateness p99 at most 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

ENDPOINTS = int(os.environ.get("AWSD_BENCH_PROBES_ENDPOINTS", "1000"))
SECONDS = float(os.environ.get("AWSD_BENCH_PROBES_SECONDS", "60"))
INTERVAL = 10.0
BLACKHOLED = ENDPOINTS // 10
BASELINE_REQUESTS = 300


def _serve(port_queue: Any) -> None:
    """The target server (separate process): a small 200 page and a blackhole listener."""
    from aiohttp import web

    async def main() -> None:
        async def ok(_: web.Request) -> web.Response:
            return web.Response(text='{"status":"UP"}', content_type="application/json")

        app = web.Application()
        app.router.add_get("/{tail:.*}", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        held: list[Any] = []

        async def blackhole(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # accept, never answer

        hole = await asyncio.start_server(blackhole, "127.0.0.1", 0, backlog=1024)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        port_queue.put((port, hole.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop

            uvloop.run(main())
        except ImportError:
            asyncio.run(main())


class Samples:
    """Stands in for the lateness histogram: keeps every observation."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        self.values.append(value)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _run_worker(port: int, hole: int, blackholed: int, state_dir: str) -> dict[str, float]:
    from daemon.base.stop import StopToken
    from daemon.config.models import AwsConfig, Config
    from daemon.config.outbox import OutboxConfig
    from daemon.core.aws import AwsClients
    from daemon.core.events import EventBus
    from daemon.core.logs import get_logger
    from daemon.core.metrics import Registry
    from daemon.outbox import Outbox
    from daemon.probes.engine import ProbesWorker
    from daemon.services import Services
    from daemon.worker import WorkerContext

    endpoints = {
        f"ep{i:04d}": {
            "url": f"http://127.0.0.1:{hole if i < blackholed else port}/ep{i}",
            "conditions": {"max_latency": "2s"},
        }
        for i in range(ENDPOINTS)
    }
    config = Config.model_validate(
        {
            "env": "bench",
            "runtime": {"state_dir": state_dir},
            "probes": {
                "defaults": {"interval": INTERVAL, "timeout": min(5.0, INTERVAL * 0.5)},
                "endpoints": endpoints,
                "concurrency": 1000,
            },
        }
    )
    metrics = Registry()
    outbox = Outbox(OutboxConfig(path=":memory:"), ":memory:", metrics=metrics,
                    events=EventBus(metrics))  # fmt: skip
    clients = AwsClients(AwsConfig(region="us-east-1"))
    services = Services(config, metrics=metrics, events=outbox.events, clients=clients,
                        outbox=outbox)  # fmt: skip
    worker = ProbesWorker(config, services)
    samples = Samples()
    worker.metrics.lateness = samples  # type: ignore[assignment]
    stop = StopToken()
    ctx = WorkerContext("probes", stop, services, get_logger())
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(worker.run(ctx))
    # Warm-up: one whole interval, so every endpoint has started once (sessions, contexts).
    await asyncio.sleep(INTERVAL)
    samples.values.clear()
    started0 = worker.scheduler.started if worker.scheduler else 0
    t0, wall0 = os.times(), time.perf_counter()
    await asyncio.sleep(SECONDS)
    t1, wall = os.times(), time.perf_counter() - wall0
    user, system = t1.user - t0.user, t1.system - t0.system
    cpu = user + system
    checks = (worker.scheduler.started if worker.scheduler else 0) - started0
    healthy = [
        r for n, r in worker.last.items() if int(n[2:]) >= blackholed and r.success
    ]  # fmt: skip
    stop.stop(loop.time() + 5)
    await task
    await outbox.close()
    return {
        "cpu_pct": 100 * cpu / wall,
        "user_pct": 100 * user / wall,
        "sys_pct": 100 * system / wall,
        "cpu_ms_per_check": 1000 * cpu / max(1, checks),
        "checks": checks,
        "healthy_ok": len(healthy),
        "p50": 1000 * _pct(samples.values, 0.5),
        "p99": 1000 * _pct(samples.values, 0.99),
        "max": 1000 * max(samples.values, default=float("nan")),
    }


def _baseline(port: int) -> float:
    """The simple loop: `requests.get(domain).elapsed`, one after another; CPU ms per check."""
    try:
        import requests
    except ImportError:
        return float("nan")
    urls = [f"http://127.0.0.1:{port}/ep{i}" for i in range(BASELINE_REQUESTS)]
    t0 = os.times()
    for url in urls:
        requests.get(url, timeout=5).elapsed.total_seconds()
    t1 = os.times()
    return 1000 * (t1.user - t0.user + t1.system - t0.system) / len(urls)


def _loop_runner() -> asyncio.Runner:
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


def main() -> None:
    from daemon.config.models import LogConfig
    from daemon.core.logs import configure_logging

    configure_logging(LogConfig(level="error", format="json"))
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    try:
        port, hole = ports.get(timeout=30)
        print(f"{ENDPOINTS} endpoints every {INTERVAL:g}s, {SECONDS:g}s measured per run "
              f"(after a {INTERVAL:g}s warm-up); server in pid {server.pid}")  # fmt: skip
        results = {}
        for label, blackholed in (("all healthy", 0), (f"{BLACKHOLED} blackholed", BLACKHOLED)):
            with tempfile.TemporaryDirectory() as state_dir, _loop_runner() as runner:
                r = runner.run(_run_worker(port, hole, blackholed, str(Path(state_dir))))
            results[label] = r
            print(
                f"  awsd, {label:<15} CPU {r['cpu_pct']:5.1f}% of one core "
                f"(user {r['user_pct']:.1f}%, kernel {r['sys_pct']:.1f}%)  "
                f"{r['cpu_ms_per_check']:.2f} ms CPU/check  {int(r['checks'])} checks  "
                f"lateness p50 {r['p50']:.1f} ms  p99 {r['p99']:.1f} ms  max {r['max']:.1f} ms"
            )
        base = _baseline(port)
        first = results["all healthy"]
        print(f"  simple loop (requests.get, sequential): {base:.2f} ms CPU/check")
        if not math.isnan(base):
            print(f"  CPU per check, simple loop / awsd: {base / first['cpu_ms_per_check']:.2f}x")
        goal_cpu = all(r["cpu_pct"] <= 10 for r in results.values())
        goal_late = all(r["p99"] <= 50 for r in results.values())
        print(f"  goals: CPU <= 10% {'met' if goal_cpu else 'MISSED'}, "
              f"lateness p99 <= 50 ms {'met' if goal_late else 'MISSED'}")  # fmt: skip
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
