"""Which shards of a stream this reader reads, and when: lineage order, leases, restarts.

`Shards` lists the stream's shards (paginated ListShards), records a starting checkpoint for
shards it has not seen, and runs a `ShardConsumer` for each shard it may read: all of them with
SQLite checkpoints, the ones whose lease it holds in a fleet (DynamoDB). A shard starts only once
its parents were read to their end (checkpoint `SHARD_END`) or are gone from the stream, so order
per partition key survives splits and merges. When a shard ends, the reader lists the shards and
(in a fleet) runs a lease round at once (`refresh_now`, `lease_round_now`): its children start
within a few round trips, never at the next periodic listing. A consumer that crashes is
restarted alone after a capped backoff; a lease that is lost stops its shard at once, with no
checkpoint; a lease another daemon asked for is handed over once its shard has stopped and
written its checkpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from daemon.base.awserrors import describe_error
from daemon.base.retry import Attempts, Backoff
from daemon.base.stop import StopToken
from daemon.config.kinesis import KinesisReaderConfig
from daemon.core.aws import AwsClients
from daemon.core.metrics import Registry
from daemon.core.shards import ShardInfo, list_shards, parents_first, stream_args
from daemon.handlers import Handler
from daemon.handlers.base import BufferingHandler
from daemon.kinesis.checkpoints import (
    SHARD_END,
    Checkpoint,
    CheckpointStore,
    LeaseLost,
    ShardState,
    starting_points,
)
from daemon.kinesis.consumer import ShardConsumer
from daemon.kinesis.leasing import ShardLeases, lease_state


class _Running:
    __slots__ = ("consumer", "lost", "stop", "task")

    def __init__(self, consumer: ShardConsumer, task: asyncio.Task[str], stop: StopToken) -> None:
        self.consumer = consumer
        self.task = task
        self.stop = stop
        self.lost = False
        """Cancelled because its lease was lost (`task.cancelling()` cannot tell: a timeout
        inside the consumer cancels its task for a moment too)."""


class Report(Protocol):
    """Where the reader shows its last error (health)."""

    last_error: str | None


class Shards:
    """The shards of one reader (see the module docstring)."""

    def __init__(
        self,
        name: str,
        cfg: KinesisReaderConfig,
        *,
        stream: str,
        clients: AwsClients,
        metrics: Registry,
        handlers: list[Handler],
        store: CheckpointStore,
        leases: ShardLeases | None,
        report: Report,
        log: Any,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.stream = stream
        self.clients = clients
        self.metrics = metrics
        self.handlers = handlers
        self.store = store
        self.leases = leases
        self.report = report
        self.log = log
        self.shards: dict[str, ShardInfo] = {}
        self.states: dict[str, ShardState] = {}
        self.running: dict[str, _Running] = {}
        self.crashes: dict[str, Attempts] = {}
        self.retry_at: dict[str, float] = {}
        self.listed_at: float | None = None
        self.refresh_now = True
        """List the shards at once (at start, when a shard ended, when a lease was taken for a
        shard not listed yet)."""
        self.lease_round_now = False
        """Run a lease round at once (a shard ended: its children's leases are free now)."""
        self.wake: Callable[[], None] = wake or (lambda: None)
        """Wakes the reader's loop (something above became due)."""
        if leases is not None:
            leases.on_handoff = self._handoff_requested
        self._stream_checked = False
        self._leases_held = metrics.gauge(
            "awsd_kinesis_leases_held", "Shard leases this daemon holds", ("reader",)
        ).labels(reader=name)
        self._shards_running = metrics.gauge(
            "awsd_kinesis_shards_reading", "Shards being read", ("reader",)
        ).labels(reader=name)
        self._lost = metrics.counter(
            "awsd_kinesis_leases_lost_total", "Shard leases lost to another daemon", ("reader",)
        ).labels(reader=name)
        self._crashes = metrics.counter(
            "awsd_kinesis_shard_crashes_total", "Shard consumers that crashed", ("reader",)
        ).labels(reader=name)

    @property
    def tasks(self) -> list[asyncio.Task[str]]:
        return [r.task for r in self.running.values()]

    async def _check_stream_epoch(self, kinesis: Any) -> None:
        """Checkpoints of an earlier stream with this name (deleted and created again; a local
        endpoint started afresh) would resume after sequence numbers the new stream has not
        reached yet, silently skipping its first records: the store drops them."""
        summary = await kinesis.describe_stream_summary(**stream_args(self.stream))
        created = summary["StreamDescriptionSummary"]["StreamCreationTimestamp"]
        if await self.store.stream_created(created.timestamp()):
            self.log.warning(
                "the stream was created again since the last checkpoints; starting over",
                stream=self.stream,
                initial_position=self.cfg.initial_position,
            )
        self._stream_checked = True

    async def refresh(self) -> None:
        kinesis = await self.clients.client("kinesis")
        listed = parents_first(await list_shards(kinesis, self.stream))
        self.shards = {s.id: s for s in listed}
        self.listed_at = asyncio.get_running_loop().time()
        if not self._stream_checked:
            await self._check_stream_epoch(kinesis)
        known = await self.store.load()
        new = starting_points(listed, known, initial_position=self.cfg.initial_position)
        if new:
            await self.store.create(new)
            self.log.info(
                "new shards",
                shards={k: s.checkpoint.position for k, s in new.items()},
                stream=self.stream,
            )
        self.states = {**known, **new}
        for key, running in self.running.items():
            if key in self.shards:
                running.consumer.shard = self.shards[key]  # it may have closed meanwhile
            else:
                running.stop.stop()  # gone from the stream (past retention)
        gone = [k for k, s in known.items() if k not in self.shards and s.checkpoint.ended]
        if gone:
            await self.store.forget(gone)
            for key in gone:
                self.states.pop(key, None)

    def _parents_done(self, shard: ShardInfo) -> bool:
        for parent in shard.parents:
            if parent not in self.shards:
                continue  # trimmed past retention: nothing left to wait for
            state = self.states.get(parent)
            if state is None or not state.checkpoint.ended:
                return False
        return True

    def waiting_for_parents(self) -> list[str]:
        return [
            k
            for k, s in self.shards.items()
            if k not in self.running and not self.ended(k) and not self._parents_done(s)
        ]

    def ended(self, key: str) -> bool:
        state = self.states.get(key)
        return state is not None and state.checkpoint.ended

    def _candidates(self) -> list[str]:
        if self.leases is None:
            return list(self.shards)
        return [k for k in self.shards if k in self.leases.held]

    async def schedule(self) -> None:
        now = asyncio.get_running_loop().time()
        for key in self._candidates():
            if key in self.running or self.ended(key) or self.retry_at.get(key, 0) > now:
                continue
            shard = self.shards[key]
            if not self._parents_done(shard):
                continue
            try:
                start = await self._start_position(key)
            except Exception as exc:  # noqa: BLE001 - this shard retries later, others go on
                error = f"shard {key}: reading its checkpoint: {describe_error(exc)}"
                self.report.last_error = error
                self.log.warning(
                    "cannot read the shard's checkpoint; retrying", shard=key, error=error
                )
                attempts = self.crashes.setdefault(key, Attempts(Backoff(1.0, self.cfg.retry_max)))
                self.retry_at[key] = now + attempts.next_delay()
                continue
            if start is None or start.ended:
                self.states[key] = ShardState(Checkpoint(SHARD_END), shard.parents)
                continue
            self._start(shard, start)
        self._shards_running.set(len(self.running))

    async def _start_position(self, key: str) -> Checkpoint | None:
        """The shard's checkpoint, read fresh: another daemon (or an earlier run of this shard)
        may have moved it since the last listing."""
        if self.leases is not None:
            lease = await self.leases.table.get(key)
            return None if lease is None else lease_state(lease).checkpoint
        state = (await self.store.load()).get(key)
        return None if state is None else state.checkpoint

    def _start(self, shard: ShardInfo, start: Checkpoint) -> None:
        stop = StopToken()
        consumer = ShardConsumer(
            reader=self.name,
            stream=self.stream,
            shard=shard,
            cfg=self.cfg,
            clients=self.clients,
            handlers=self.handlers,
            store=self.store,
            start=start,
            metrics=self.metrics,
            log=self.log,
            stop=stop,
        )
        task = asyncio.create_task(consumer.run(), name=f"kinesis:{self.name}:{shard.id}")
        self.running[shard.id] = _Running(consumer, task, stop)
        self.retry_at.pop(shard.id, None)
        self.log.info("reading shard", shard=shard.id, start=str(start), parents=shard.parents)

    async def reap(self) -> None:
        for key, running in list(self.running.items()):
            if not running.task.done():
                continue
            del self.running[key]
            running.consumer.m.forget()
            if running.task.cancelled():
                if not running.lost:
                    self.log.warning("shard consumer was cancelled; restarting it", shard=key)
                continue
            exc = running.task.exception()
            if exc is None:
                if running.task.result() == "ended":
                    await self._shard_ended(key)
                elif self.leases is not None and key in self.leases.handoffs:
                    await self._hand_over(key)
                continue
            if isinstance(exc, LeaseLost):
                self._lease_lost(key, "checkpoint refused")
                continue
            self._crashes.inc()
            attempts = self.crashes.setdefault(key, Attempts(Backoff(1.0, self.cfg.retry_max)))
            delay = attempts.next_delay()
            self.retry_at[key] = asyncio.get_running_loop().time() + delay
            self.report.last_error = f"shard {key}: {type(exc).__name__}: {exc}"
            self.log.error(
                "shard consumer crashed; restarting it",
                shard=key,
                retry_in_s=round(delay, 3),
                exc_info=exc,
            )
            self._discard(key)

    async def _shard_ended(self, key: str) -> None:
        shard = self.shards.get(key)
        self.states[key] = ShardState(Checkpoint(SHARD_END), shard.parents if shard else ())
        self.crashes.pop(key, None)
        # Its children start now, not at the next periodic listing: list the shards (they may
        # not be listed yet) and, in a fleet, take their leases.
        self.refresh_now = True
        if self.leases is not None:
            await self.leases.release(key)
            self._leases_held.set(len(self.leases.held))
            self.lease_round_now = True

    def _discard(self, key: str) -> None:
        for handler in self.handlers:
            if isinstance(handler, BufferingHandler):
                handler.discard(key)

    # --- leases ----------------------------------------------------------------------------------

    async def lease_round(self) -> None:
        assert self.leases is not None
        for key in await self.leases.renew():
            self._lease_lost(key, "renewal refused or impossible")
        for key in await self.leases.scan():
            self._lease_lost(key, "taken by another daemon")
        for key, lease in self.leases.view.items():
            if key not in self.running:
                self.states[key] = lease_state(lease)
        taken = await self.leases.take(self.leases.plan())
        for lease in taken:
            self.retry_at.pop(lease.key, None)
            if lease.key not in self.shards:
                self.refresh_now = True  # a child another daemon listed before we did
        for key in list(self.leases.held):
            if self.leases.ended(key) and key not in self.running:
                await self.leases.release(key)
        for key in list(self.leases.handoffs):
            if key not in self.running:
                await self._hand_over(key)
        self._leases_held.set(len(self.leases.held))
        await self._abort_lost()

    def _handoff_requested(self, key: str) -> None:
        """Another daemon asked for this shard: stop fetching now, finish the record in hand,
        write the checkpoint; `reap` then hands the lease over."""
        assert self.leases is not None
        running = self.running.get(key)
        if running is None:  # not being read: a lease round hands it over
            self.lease_round_now = True
            self.wake()
            return
        loop = asyncio.get_running_loop()
        running.stop.stop(loop.time() + self.leases.failover_time / 3)

    async def _hand_over(self, key: str) -> None:
        assert self.leases is not None
        self._discard(key)
        await self.leases.hand_over(key)
        self._leases_held.set(len(self.leases.held))

    def _lease_lost(self, key: str, why: str) -> None:
        """Stop the shard at once: no further record, no checkpoint."""
        self._lost.inc()
        running = self.running.get(key)
        if running is not None:
            running.lost = True
            running.task.cancel()
        self._discard(key)
        self.log.warning("lease lost; shard stopped", shard=key, reason=why)

    async def _abort_lost(self) -> None:
        cancelled = [r.task for r in self.running.values() if r.lost and not r.task.done()]
        if not cancelled:
            return
        # Bounded: the lease loop must keep renewing the other leases whatever a shard does.
        _, stuck = await asyncio.wait(cancelled, timeout=self.cfg.leases.failover_time / 3)
        for task in stuck:
            self.log.warning("shard still stopping after its lease was lost", task=task.get_name())
            task.cancel()
        await self.reap()

    async def stop(self, deadline: float | None, budget: float) -> None:
        """Let every shard finish its current record and write its checkpoint (cancelled after
        `budget` s), then release the leases."""
        for running in self.running.values():
            running.stop.stop(deadline)
        tasks = self.tasks
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=budget)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for key, running in self.running.items():
            running.consumer.m.forget()
            self.retry_at.pop(key, None)
        self.running.clear()
        if self.leases is not None:
            for key in list(self.leases.held):
                if key in self.leases.handoffs:
                    await self.leases.hand_over(key)  # it was asked for: no need to wait
                else:
                    await self.leases.release(key)
            self._leases_held.set(0)
        self._shards_running.set(0)

    def health(self) -> dict[str, Any]:
        return {
            "shards": {k: r.consumer.health() for k, r in sorted(self.running.items())},
            "ended": sorted(k for k in self.shards if self.ended(k)),
            "waiting_for_parents": self.waiting_for_parents(),
        }
