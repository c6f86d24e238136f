"""The reconciler's loop: a pass every `resources.interval` seconds, after each reload, and
sooner after a pass that failed.

Every `resources.interval` seconds (jittered, so a fleet does not call AWS in step), after each
reload, and sooner after a pass that failed (backoff), it runs a pass (`passes.py`). With
`mode = "enforce"` and `reconcile_at_start`, one pass runs before the other workers start
(`prepare`), bounded by `startup_timeout`, so the queues and topics they use exist first.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from daemon.base.retry import Attempts, Backoff
from daemon.base.stop import Stopped
from daemon.config.models import Config
from daemon.core.events import ConfigReloaded
from daemon.core.logs import get_logger
from daemon.reconcile.passes import NAME, Reconciler
from daemon.reconcile.results import PassResult
from daemon.services import Services
from daemon.worker import Worker, WorkerContext

log = get_logger()

STALL_TIMEOUT = 900.0  # a pass may wait minutes for a reshard or a recreated queue
BEAT_EVERY = 30.0
RETRY_BACKOFF_INITIAL = 5.0


class ReconcilerWorker(Worker):
    """Runs reconcile passes until stopped (see the module docstring)."""

    stall_timeout = STALL_TIMEOUT

    def __init__(self, config: Config, services: Services) -> None:
        self.config = config
        self.services = services
        self.reconciler: Reconciler | None = None
        self.last: PassResult | None = None
        self.passes = 0

    async def run(self, ctx: WorkerContext) -> None:
        res = self.config.resources
        reconciler = Reconciler(self.config, self.services, stop=ctx.stop, log=ctx.log)
        self.reconciler = reconciler
        reloads = self.services.events.subscribe(ConfigReloaded, maxsize=4, name=NAME)
        retries = Attempts(Backoff(RETRY_BACKOFF_INITIAL, max(res.interval, RETRY_BACKOFF_INITIAL)))
        try:
            while not ctx.stopping:
                try:
                    self.last = await reconciler.run_pass()
                except Stopped:
                    break
                _drain(reloads)  # a reload announced during the pass is served by it
                self.passes += 1
                ctx.beat()
                if self.last.ok:
                    retries.reset()
                    delay = res.interval * (1 + random.uniform(-res.jitter, res.jitter))
                else:
                    delay = min(res.interval, retries.next_delay())
                if not await self._wait(ctx, reloads, delay):
                    break
        finally:
            reloads.close()
            await reconciler.close()

    async def _wait(self, ctx: WorkerContext, reloads: Any, delay: float) -> bool:
        """Sleep `delay` s, or until a reload; beat meanwhile. False when stopping."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while (left := until - loop.time()) > 0:
            try:
                await ctx.stop.race(asyncio.wait_for(reloads.get(), min(left, BEAT_EVERY)))
            except TimeoutError:
                ctx.beat()
                continue
            except Stopped:
                return False
            _drain(reloads)  # several reloads: one pass
            ctx.log.info("reconciling after a config reload")
            return True
        return not ctx.stopping

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.config.resources.mode, "passes": self.passes}
        if self.last is not None:
            out["leader"] = self.last.leader
            out["last_pass"] = self.last.to_json()
        if self.reconciler is not None:
            now = asyncio.get_running_loop().time()
            out["contested"] = [c.resource for c in self.reconciler.flaps.active(now)]
            if self.reconciler.outputs:
                out["outputs"] = self.reconciler.outputs
        return out


def _drain(subscription: Any) -> None:
    while not subscription.queue.empty():
        subscription.queue.get_nowait()


async def prepare(services: Services) -> None:
    """Before the other workers start: one enforcing pass, bounded by `startup_timeout`."""
    config = services.config
    res = config.resources
    if res.mode != "enforce" or not res.reconcile_at_start or not res.declared():
        return
    reconciler = Reconciler(config, services, log=log.bind(worker=NAME))
    try:
        async with asyncio.timeout(res.startup_timeout):
            result = await reconciler.run_pass()
    except TimeoutError:
        log.warning(
            "startup reconcile did not finish in time; workers start now and the reconciler "
            "carries on",
            timeout_s=res.startup_timeout,
        )
        return
    finally:
        await reconciler.close()  # the worker takes the lease over
    if not result.ok:
        log.warning(
            "startup reconcile incomplete; the reconciler retries",
            error=result.error,
            failed=list(result.failed),
        )
