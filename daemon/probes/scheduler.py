"""The probe scheduler: start-to-start, spread out, bounded, and never held up by a slow endpoint.

Promises:
- Each endpoint starts every `interval` seconds measured start to start on the loop's monotonic
  clock (a check's own duration never shifts the next one), at a phase given by a hash of its
  name and the wall clock, so checks spread evenly over the interval, do not bunch after a
  restart, and keep their cadence across restarts and reloads. Phases lie on a grid of `SLOT`
  seconds: the endpoints of one slot start together, in one wake-up of the loop.
- Every check runs in its own task under a global concurrency limit; the scheduler only starts
  tasks, so a slow or unreachable endpoint delays nothing but itself.
- A check that cannot get a slot before `interval - timeout` has passed is skipped (counted),
  and one still running at its next start time is not started twice, so checks of one endpoint
  never overlap and each has its full timeout.
- Stopping lets checks in flight finish until the stop deadline, then cancels them and waits
  for them: nothing is left running.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from daemon.base.stop import StopToken

TICK = 30.0
EARLY = 0.001
SLOT = 0.1
"""Seconds between the start slots of endpoints with one interval. Checks that share a slot
start in one wake-up of the event loop: on a small machine each wake-up costs about as much
CPU as a whole check, so 1000 endpoints every 10 s in 100 slots of ten take a third of the
CPU of 1000 wake-ups, while starts stay spread over the interval."""
FINISH_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval: float
    timeout: float


def phase(name: str, interval: float, wall_now: float) -> float:
    """Seconds from now until `name`'s slot: a hash of the name places it within the interval,
    anchored to the wall clock so the slot is the same in every process. Slots are `SLOT`
    apart (a tenth of a short interval): endpoints whose hashes fall in one slot start together,
    in one wake-up of the loop."""
    digest = hashlib.sha256(name.encode()).digest()
    step = min(SLOT, interval / 10)
    slots = max(1, round(interval / step))
    offset = int.from_bytes(digest[:8], "big") * slots // 2**64 * (interval / slots)
    return (offset - wall_now) % interval


Run = Callable[[str], Awaitable[None]]
OnStart = Callable[[str, float], None]


class Scheduler:
    """Runs `run(name)` for every job on its schedule until the stop token is set."""

    def __init__(
        self,
        jobs: list[Job],
        run: Run,
        *,
        concurrency: int,
        on_start: OnStart | None = None,
        on_skip: Callable[[str, str], None] | None = None,
    ) -> None:
        self.jobs = {job.name: job for job in jobs}
        self._run = run
        self._slots = asyncio.Semaphore(concurrency)
        self._on_start = on_start
        self._on_skip = on_skip
        self._running: dict[str, asyncio.Task[None]] = {}
        self._heap: list[tuple[float, str]] = []
        self.started = 0
        self.skipped = 0

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run(self, stop: StopToken, *, tick: Callable[[], None] | None = None) -> None:
        """Schedule until `stop`; `tick` is called at least every `TICK` seconds (progress)."""
        loop = asyncio.get_running_loop()
        now, wall = loop.time(), time.time()
        self._heap = [(now + phase(j.name, j.interval, wall), j.name) for j in self.jobs.values()]
        heapq.heapify(self._heap)
        # One event, set by a timer or by the stop request: waking up for the next slot must
        # be cheap (it happens a hundred times a second with a thousand endpoints), so no
        # timeout context (which raises and catches CancelledError on every expiry).
        wake = asyncio.Event()
        stopper = asyncio.ensure_future(stop.wait())
        stopper.add_done_callback(lambda _: wake.set())
        try:
            while not stop.stopping:
                now = loop.time()
                # Timers may fire a hair early: starting within EARLY of the slot is on time, and
                # saves waking up again for a sub-millisecond sleep.
                while self._heap and self._heap[0][0] <= now + EARLY:
                    due, name = heapq.heappop(self._heap)
                    self._start(name, due)
                    job = self.jobs[name]
                    following = due + job.interval
                    if following <= now:  # the loop was held up: skip missed slots, keep phase
                        missed = int((now - due) // job.interval)
                        following = due + (missed + 1) * job.interval
                    heapq.heappush(self._heap, (following, name))
                if tick is not None:
                    tick()
                wake.clear()
                until = min(now + TICK, self._heap[0][0]) if self._heap else now + TICK
                timer = loop.call_at(until, wake.set)
                await wake.wait()
                timer.cancel()
        finally:
            stopper.cancel()
            await self._finish(stop)

    def _start(self, name: str, due: float) -> None:
        if name in self._running:
            self._skip(name, "previous check still running")
            return
        task = asyncio.create_task(self._job(name, due), name=f"probe:{name}")
        self._running[name] = task
        task.add_done_callback(lambda _: self._running.pop(name, None))

    async def _job(self, name: str, due: float) -> None:
        loop = asyncio.get_running_loop()
        job = self.jobs[name]
        if self._slots.locked():  # full: wait for a slot, but not past the latest useful start
            latest_start = due + max(0.0, job.interval - job.timeout)
            try:
                async with asyncio.timeout(max(0.0, latest_start - loop.time())):
                    await self._slots.acquire()
            except TimeoutError:
                self._skip(name, "no free slot (probes.concurrency) in time")
                return
        else:
            await self._slots.acquire()
        try:
            self.started += 1
            if self._on_start is not None:
                self._on_start(name, loop.time() - due)
            await self._run(name)
        finally:
            self._slots.release()

    def _skip(self, name: str, why: str) -> None:
        self.skipped += 1
        if self._on_skip is not None:
            self._on_skip(name, why)

    async def _finish(self, stop: StopToken) -> None:
        tasks = list(self._running.values())
        if not tasks:
            return
        # Checks in flight get a short grace (a result is cheap to lose; a reload or stop that
        # waits for a blackholed endpoint's full timeout is not), then they are cancelled.
        grace = min(FINISH_GRACE, stop.remaining(FINISH_GRACE)) if stop.stopping else 0.0
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
