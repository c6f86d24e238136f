"""The supervisor: runs workers, restarts the ones that crash, stops them within a deadline.

Promises:
- a crash is logged with the worker's name and traceback, counted, and followed by a restart
  after a capped exponential delay with jitter; the other workers never notice;
- a worker that keeps crashing shows as `failed` (and /readyz says so) but keeps being retried at
  the capped delay, so it recovers by itself when the cause goes away (an endpoint comes back);
- `apply` turns one set of specs into another touching only what changed: added workers start,
  removed ones stop gracefully, changed ones restart, unchanged ones keep running untouched;
- stopping is three-stage: set the stop token, wait until the deadline, then cancel;
- while the gate is closed (the daemon's startup preparation, e.g. the reconciler creating the
  queues and topics the others use), a worker is running but holds its first `run` until the
  gate opens or it is asked to stop; health shows what it waits for, and it is never "stuck".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from daemon.base.clock import iso_utc
from daemon.base.retry import Backoff
from daemon.base.stop import Stopped, StopToken
from daemon.config.models import RuntimeConfig
from daemon.core.logs import bind_worker, get_logger
from daemon.core.metrics import Registry
from daemon.worker import Worker, WorkerContext, WorkerSpec

if TYPE_CHECKING:
    from daemon.services import Services

log = get_logger()

CANCEL_GRACE = 2.0  # seconds a cancelled worker gets to unwind before it is reported as stuck
HEALTHY_RUN = 30.0  # a run this long resets the consecutive-crash count
STARTUP_WAIT = 5.0  # how long `apply` waits for new workers to begin their first run


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Runner:
    """One named worker across its run attempts."""

    def __init__(
        self,
        spec: WorkerSpec,
        services: Services,
        runtime: RuntimeConfig,
        metrics: Registry,
        gate: Gate | None = None,
    ) -> None:
        self.spec = spec
        self.gate = gate or Gate()
        self.waiting_for: str | None = None
        """What the worker waits for before its first run (the gate's reason), or None."""
        self.services = services
        self.state = State.STARTING
        self.stop_token = StopToken()
        self.restarts = 0
        self.crashes_in_row = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.started_at = time.time()
        self.worker: Worker | None = None
        self.ctx: WorkerContext | None = None
        self.task: asyncio.Task[None] | None = None
        self.first_attempt = asyncio.Event()
        """Set once the worker's first run attempt has begun (or failed to build)."""
        self._backoff = Backoff(runtime.restart_backoff, runtime.restart_backoff_max)
        self._failed_after = runtime.failed_after
        self._default_stall = runtime.stall_timeout
        self._crashes = metrics.counter(
            "awsd_worker_crashes_total", "Worker crashes", ("worker",)
        ).labels(worker=spec.name)
        self._restarts = metrics.counter(
            "awsd_worker_restarts_total", "Worker restarts", ("worker",)
        ).labels(worker=spec.name)

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name=f"worker:{self.spec.name}")

    async def _loop(self) -> None:
        bind_worker(self.spec.name)
        wlog = log.bind(worker=self.spec.name)
        loop = asyncio.get_running_loop()
        while not self.stop_token.stopping:
            began = loop.time()
            error: str
            try:
                self.worker = self.spec.build(self.services)
                self.ctx = WorkerContext(self.spec.name, self.stop_token, self.services, wlog)
                self.state = State.RUNNING
                self.first_attempt.set()
                if not await self._through_gate():
                    break
                await self.worker.run(self.ctx)
                if self._asked_to_stop():
                    break
                error = "worker returned without being asked to stop"
                wlog.error("worker exited unexpectedly; restarting", kind=self.spec.kind)
            except Exception as exc:  # noqa: BLE001 - any crash is logged and restarted
                error = f"{type(exc).__name__}: {exc}"
                wlog.error("worker crashed", kind=self.spec.kind, exc_info=exc)
            self.first_attempt.set()
            if loop.time() - began >= HEALTHY_RUN:
                self.crashes_in_row = 0
            self.crashes_in_row += 1
            self.last_error, self.last_error_at = error, time.time()
            self._crashes.inc()
            self.state = (
                State.FAILED if self.crashes_in_row >= self._failed_after else State.BACKOFF
            )
            delay = self._backoff.delay(self.crashes_in_row - 1)
            wlog.info(
                "worker restart scheduled",
                delay_s=round(delay, 3),
                consecutive_crashes=self.crashes_in_row,
                state=str(self.state),
            )
            if not await self.stop_token.sleep(delay):
                break
            self.restarts += 1
            self._restarts.inc()
        self.state = State.STOPPED

    def _asked_to_stop(self) -> bool:
        return self.stop_token.stopping

    async def _through_gate(self) -> bool:
        """Wait while the gate is closed; False when asked to stop meanwhile."""
        if self.gate.is_open():
            return True
        self.waiting_for = self.gate.reason
        try:
            await self.stop_token.race(self.gate.wait())
        except Stopped:
            return False
        finally:
            self.waiting_for = None
        if self.ctx is not None:
            self.ctx.beat()  # the wait was not a stall
        return True

    async def stop(self, deadline: float) -> None:
        """Ask the worker to finish by `deadline` (loop time); cancel it if it does not."""
        task = self.task
        if task is None or task.done():
            self.state = State.STOPPED
            return
        self.state = State.STOPPING
        self.stop_token.stop(deadline)
        loop = asyncio.get_running_loop()
        await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        if not task.done():
            log.warning("worker did not stop by the deadline; cancelling", worker=self.spec.name)
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_GRACE)
        if not task.done():
            log.error("worker ignored cancellation", worker=self.spec.name)
        elif not task.cancelled() and task.exception() is not None:
            log.error(
                "worker failed while stopping", worker=self.spec.name, exc_info=task.exception()
            )
        self.state = State.STOPPED

    def stall_timeout(self) -> float | None:
        if self.worker is None or not self.worker.watched:
            return None
        return self.worker.stall_timeout or self._default_stall

    def stuck_for(self, now: float) -> float:
        """Seconds past its stall timeout this worker has gone without progress (0 if fine)."""
        limit = self.stall_timeout()
        if limit is None or self.ctx is None or self.state != State.RUNNING or self.waiting_for:
            return 0.0
        return max(0.0, now - self.ctx.last_beat - limit)

    def health(self, now: float) -> dict[str, Any]:
        details: dict[str, Any] = {
            "kind": self.spec.kind,
            "state": str(self.state),
            "restarts": self.restarts,
            "consecutive_crashes": self.crashes_in_row,
            "last_error": self.last_error,
            "last_error_at": iso_utc(self.last_error_at),
            "started_at": iso_utc(self.started_at),
        }
        if self.waiting_for is not None:
            details["waiting_for"] = self.waiting_for
            return details  # the worker has not run yet: its own health has nothing to say
        if self.ctx is not None:
            details["last_progress_s_ago"] = round(now - self.ctx.last_beat, 3)
        if self.worker is not None:
            try:
                details.update(self.worker.health())
            except Exception as exc:  # noqa: BLE001 - health must always answer
                details["health_error"] = f"{type(exc).__name__}: {exc}"
        return details


class Gate:
    """Open by default; the daemon closes it around its startup preparation."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.reason = ""

    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self, reason: str) -> None:
        self.reason = reason
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        await self._open.wait()


@dataclass(frozen=True)
class Changes:
    """What `Supervisor.apply` did."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


class Supervisor:
    """All runners, keyed by worker name."""

    def __init__(self, metrics: Registry) -> None:
        self.metrics = metrics
        self.runners: dict[str, Runner] = {}
        self.gate = Gate()
        """Closed while workers must hold their first run (see the module docstring)."""
        by_state = metrics.gauge("awsd_workers", "Workers by state", ("state",))

        def collect() -> None:
            counts: dict[str, int] = {}
            for runner in self.runners.values():
                counts[runner.state.value] = counts.get(runner.state.value, 0) + 1
            for state in State:
                by_state.labels(state=state.value).set(counts.get(state.value, 0))

        metrics.add_collector(collect)

    async def apply(
        self, specs: list[WorkerSpec], services: Services, runtime: RuntimeConfig, deadline: float
    ) -> Changes:
        wanted = {spec.name: spec for spec in specs}
        current = {name: runner.spec for name, runner in self.runners.items()}
        removed = tuple(sorted(current.keys() - wanted.keys()))
        added = tuple(sorted(wanted.keys() - current.keys()))
        common = wanted.keys() & current.keys()
        changed = tuple(
            sorted(n for n in common if wanted[n].fingerprint != current[n].fingerprint)
        )
        unchanged = tuple(sorted(common - set(changed)))
        await asyncio.gather(*(self.runners[n].stop(deadline) for n in (*removed, *changed)))
        for name in removed:
            del self.runners[name]
        starting = []
        for name in (*changed, *added):
            runner = Runner(wanted[name], services, runtime, self.metrics, self.gate)
            self.runners[name] = runner
            runner.start()
            starting.append(asyncio.ensure_future(runner.first_attempt.wait()))
        if starting:
            # READY=1 means "workers run": wait until each has begun (they start concurrently).
            _, pending = await asyncio.wait(starting, timeout=STARTUP_WAIT)
            for waiter in pending:
                waiter.cancel()
        return Changes(added, removed, changed, unchanged)

    async def stop_all(self, deadline: float) -> None:
        await asyncio.gather(*(runner.stop(deadline) for runner in self.runners.values()))

    def not_ready(self) -> list[str]:
        return sorted(n for n, r in self.runners.items() if r.state != State.RUNNING)

    def failed(self) -> list[str]:
        return sorted(n for n, r in self.runners.items() if r.state == State.FAILED)

    def stuck(self) -> list[str]:
        now = asyncio.get_running_loop().time()
        return sorted(n for n, r in self.runners.items() if r.stuck_for(now) > 0)

    def health(self) -> dict[str, dict[str, Any]]:
        now = asyncio.get_running_loop().time()
        return {name: runner.health(now) for name, runner in sorted(self.runners.items())}
