"""The Kinesis reader worker: every shard of one stream, one task per shard, in lineage order.

It lists the stream's shards (paginated ListShards, every `shard_refresh_interval` and at once
when a shard ends), records a starting checkpoint for shards it has not seen, and runs a
`ShardConsumer` for each shard it may read: all of them with SQLite checkpoints, the ones whose
lease it holds in a fleet (DynamoDB). A shard starts only once its parents were read to their end
(checkpoint `SHARD_END`) or are gone from the stream, so order per partition key survives splits
and merges. A consumer that crashes is restarted alone after a capped backoff; a lease that is
lost stops its shard at once, with no checkpoint; a graceful stop lets every shard finish its
current record, flush the archive and write its checkpoint, then releases the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import Any

from daemon.base.retry import Attempts, Backoff
from daemon.base.stop import StopToken
from daemon.config.kinesis import KinesisReaderConfig
from daemon.config.kinesis_references import lease_table, lease_table_declared_or_external
from daemon.config.models import Config
from daemon.core.aws import describe_error, error_code
from daemon.core.iam import CONTRIBUTORS, Grant, Scope
from daemon.core.leases import LeaseTable, default_owner
from daemon.handlers import Handler, build_handler
from daemon.handlers.base import BufferingHandler
from daemon.kinesis.archive import S3Archive
from daemon.kinesis.checkpoints import (
    SHARD_END,
    Checkpoint,
    CheckpointStore,
    LeaseLost,
    ShardState,
    SqliteCheckpoints,
    starting_points,
)
from daemon.kinesis.consumer import ShardConsumer
from daemon.kinesis.leasing import LeaseCheckpoints, ShardLeases, lease_state
from daemon.kinesis.shards import ShardInfo, list_shards, parents_first, stream_args
from daemon.services import Services
from daemon.worker import Worker, WorkerContext, WorkerSpec, fingerprint


class _Running:
    __slots__ = ("consumer", "stop", "task")

    def __init__(self, consumer: ShardConsumer, task: asyncio.Task[str], stop: StopToken) -> None:
        self.consumer = consumer
        self.task = task
        self.stop = stop


class KinesisReader(Worker):
    def __init__(self, name: str, cfg: KinesisReaderConfig, services: Services) -> None:
        self.name = name
        self.cfg = cfg
        self.services = services
        self.fleet = cfg.checkpoints.store == "dynamodb"
        self.stream = cfg.stream
        """The stream's AWS name or ARN, once resolved."""
        self.bucket = cfg.archive.bucket if cfg.archive is not None else ""
        """The archive bucket's AWS name, once resolved."""
        self.table = lease_table(services.config, name)
        """The lease table's AWS name, once resolved."""
        self.own_table = not lease_table_declared_or_external(services.config, cfg.leases.table)
        """Whether the lease table is the reader's own, which it creates when missing (a declared
        one is the reconciler's to create, an ARN somebody else's)."""
        self.shards: dict[str, ShardInfo] = {}
        self.states: dict[str, ShardState] = {}
        self.running: dict[str, _Running] = {}
        self.crashes: dict[str, Attempts] = {}
        self.retry_at: dict[str, float] = {}
        self.handlers: list[Handler] = []
        self.store: CheckpointStore | None = None
        self.leases: ShardLeases | None = None
        self.last_error: str | None = None
        self.listed_at: float | None = None
        self._wake = asyncio.Event()
        self._refresh_now = True
        self._stream_checked = False
        m = services.metrics
        self._leases_held = m.gauge(
            "awsd_kinesis_leases_held", "Shard leases this daemon holds", ("reader",)
        ).labels(reader=name)
        self._shards_running = m.gauge(
            "awsd_kinesis_shards_reading", "Shards being read", ("reader",)
        ).labels(reader=name)
        self._lost = m.counter(
            "awsd_kinesis_leases_lost_total", "Shard leases lost to another daemon", ("reader",)
        ).labels(reader=name)
        self._crashes = m.counter(
            "awsd_kinesis_shard_crashes_total", "Shard consumers that crashed", ("reader",)
        ).labels(reader=name)

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self, ctx: WorkerContext) -> None:
        try:
            if not await self._resolve(ctx):
                return
            self.handlers = await self._build_handlers(ctx)
            if not await self._setup(ctx):
                return
            await self._loop(ctx)
        finally:
            await self._shutdown(ctx)

    async def _resolve(self, ctx: WorkerContext) -> bool:
        """The stream's (and archive bucket's, and lease table's) AWS name or ARN (the config
        may name declared resources)."""
        tries = Attempts(Backoff(1.0, self.cfg.retry_max))
        targets = self.services.targets
        while not ctx.stopping:
            try:
                self.stream = await targets.aws_name("streams", self.cfg.stream)
                if self.cfg.archive is not None:
                    self.bucket = await targets.aws_name("buckets", self.cfg.archive.bucket)
                if self.fleet:
                    self.table = await targets.aws_name("tables", self.table)
                return True
            except Exception as exc:  # noqa: BLE001 - retried; shown in health
                self.last_error = f"resolving names: {describe_error(exc)}"
                ctx.log.warning("cannot resolve resource names; retrying", error=self.last_error)
                await ctx.sleep(tries.next_delay())
        return False

    async def _build_handlers(self, ctx: WorkerContext) -> list[Handler]:
        handlers: list[Handler] = []
        if self.cfg.handler is not None:
            handlers.append(build_handler(self.cfg.handler, self.services, log=ctx.log))
        if self.cfg.archive is not None:
            handlers.append(
                S3Archive(
                    self.cfg.archive,
                    self.services.clients,
                    metrics=self.services.metrics,
                    reader=self.name,
                    bucket=self.bucket,
                    log=ctx.log,
                )
            )
        return handlers

    async def _setup(self, ctx: WorkerContext) -> bool:
        if not self.fleet:
            path = self.cfg.checkpoints.path or str(
                self.services.state_dir / "kinesis-checkpoints.sqlite3"
            )
            self.store = SqliteCheckpoints(path, reader=self.name, stream=self.stream)
            return True
        table = LeaseTable(
            self.services.clients,
            self.table,
            self.cfg.leases.owner or default_owner(),
            tags={"awsd:env": self.services.config.env, "awsd:reader": self.name},
        )
        tries = Attempts(Backoff(1.0, self.cfg.retry_max))
        while not ctx.stopping:
            try:
                await table.ensure_table(create=self.own_table)
                break
            except Exception as exc:  # noqa: BLE001 - retried; shown in health
                self.last_error = f"lease table {table.table}: {describe_error(exc)}"
                ctx.log.warning("lease table not ready; retrying", error=self.last_error)
                await ctx.sleep(tries.next_delay())
        else:
            return False
        self.leases = ShardLeases(
            table,
            failover_time=self.cfg.leases.failover_time,
            max_leases=self.cfg.leases.max_leases,
            log=ctx.log,
        )
        self.store = LeaseCheckpoints(self.leases, stream=self.stream)
        ctx.log.info("reading as part of a fleet", table=table.table, owner=table.owner)
        return True

    async def _loop(self, ctx: WorkerContext) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = next_lease_round = 0.0
        refresh_tries = Attempts(Backoff(1.0, self.cfg.retry_max))
        lease_tries = Attempts(Backoff(0.5, self.cfg.leases.failover_time / 3))
        tick = self.cfg.leases.failover_time / 3
        while not ctx.stopping:
            ctx.beat()
            now = loop.time()
            if self._refresh_now or now >= next_refresh:
                self._refresh_now = False
                if await self._guard(ctx, "listing shards", self._refresh(ctx)):
                    refresh_tries.reset()
                    next_refresh = now + self.cfg.shard_refresh_interval
                else:
                    next_refresh = now + refresh_tries.next_delay()
            if self.fleet and now >= next_lease_round:
                if await self._guard(ctx, "lease round", self._lease_round(ctx, now)):
                    lease_tries.reset()
                    next_lease_round = now + tick
                else:
                    next_lease_round = now + lease_tries.next_delay()
            await self._reap(ctx)
            await self._schedule(ctx)
            wake = [next_refresh, *self.retry_at.values()]
            if self.fleet:
                wake.append(next_lease_round)
            await self._sleep(ctx, max(0.0, min(wake) - loop.time()))

    async def _sleep(self, ctx: WorkerContext, seconds: float) -> None:
        self._wake.clear()
        tasks = [r.task for r in self.running.values()]
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(ctx.stop.wait())]
        try:
            await asyncio.wait([*waiters, *tasks], timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _guard(self, ctx: WorkerContext, what: str, step: Any) -> bool:
        try:
            await step
        except Exception as exc:  # noqa: BLE001 - retried with backoff, shown in health
            self.last_error = f"{what}: {describe_error(exc)}"
            level = "warning" if error_code(exc) != "ResourceNotFoundException" else "error"
            getattr(ctx.log, level)(f"{what} failed; retrying", error=self.last_error)
            return False
        return True

    async def _shutdown(self, ctx: WorkerContext) -> None:
        for running in self.running.values():
            running.stop.stop(ctx.stop.deadline)
        tasks = [r.task for r in self.running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=ctx.stop.remaining(10.0))
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for key, running in self.running.items():
            running.consumer.m.forget()
            self.retry_at.pop(key, None)
        self.running.clear()
        if self.leases is not None:
            for key in list(self.leases.held):
                await self.leases.release(key)
            self._leases_held.set(0)
        if self.store is not None:
            await self.store.close()
        for handler in self.handlers:
            with contextlib.suppress(Exception):
                await handler.close()
        self._shards_running.set(0)

    # --- shards ----------------------------------------------------------------------------------

    async def _check_stream_epoch(self, ctx: WorkerContext, kinesis: Any) -> None:
        """Checkpoints of an earlier stream with this name (deleted and created again; a local
        endpoint started afresh) would resume after sequence numbers the new stream has not
        reached yet, silently skipping its first records: the store drops them."""
        assert self.store is not None
        summary = await kinesis.describe_stream_summary(**stream_args(self.stream))
        created = summary["StreamDescriptionSummary"]["StreamCreationTimestamp"]
        if await self.store.stream_created(created.timestamp()):
            ctx.log.warning(
                "the stream was created again since the last checkpoints; starting over",
                stream=self.stream,
                initial_position=self.cfg.initial_position,
            )
        self._stream_checked = True

    async def _refresh(self, ctx: WorkerContext) -> None:
        assert self.store is not None
        kinesis = await self.services.clients.client("kinesis")
        listed = parents_first(await list_shards(kinesis, self.stream))
        self.shards = {s.id: s for s in listed}
        self.listed_at = asyncio.get_running_loop().time()
        if not self._stream_checked:
            await self._check_stream_epoch(ctx, kinesis)
        known = await self.store.load()
        new = starting_points(listed, known, initial_position=self.cfg.initial_position)
        if new:
            await self.store.create(new)
            ctx.log.info(
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
            if k not in self.running and not self._ended(k) and not self._parents_done(s)
        ]

    def _ended(self, key: str) -> bool:
        state = self.states.get(key)
        return state is not None and state.checkpoint.ended

    def _candidates(self) -> list[str]:
        if self.leases is None:
            return list(self.shards)
        return [k for k in self.shards if k in self.leases.held]

    async def _schedule(self, ctx: WorkerContext) -> None:
        now = asyncio.get_running_loop().time()
        for key in self._candidates():
            if key in self.running or self._ended(key) or self.retry_at.get(key, 0) > now:
                continue
            shard = self.shards[key]
            if not self._parents_done(shard):
                continue
            try:
                start = await self._start_position(key)
            except Exception as exc:  # noqa: BLE001 - this shard retries later, others go on
                self.last_error = f"shard {key}: reading its checkpoint: {describe_error(exc)}"
                ctx.log.warning(
                    "cannot read the shard's checkpoint; retrying", shard=key, error=self.last_error
                )
                attempts = self.crashes.setdefault(key, Attempts(Backoff(1.0, self.cfg.retry_max)))
                self.retry_at[key] = now + attempts.next_delay()
                continue
            if start is None or start.ended:
                self.states[key] = ShardState(Checkpoint(SHARD_END), shard.parents)
                continue
            self._start(ctx, shard, start)
        self._shards_running.set(len(self.running))

    async def _start_position(self, key: str) -> Checkpoint | None:
        """The shard's checkpoint, read fresh: another daemon (or an earlier run of this shard)
        may have moved it since the last listing."""
        if self.leases is not None:
            lease = await self.leases.table.get(key)
            return None if lease is None else lease_state(lease).checkpoint
        assert self.store is not None
        state = (await self.store.load()).get(key)
        return None if state is None else state.checkpoint

    def _start(self, ctx: WorkerContext, shard: ShardInfo, start: Checkpoint) -> None:
        assert self.store is not None
        stop = StopToken()
        consumer = ShardConsumer(
            reader=self.name,
            stream=self.stream,
            shard=shard,
            cfg=self.cfg,
            clients=self.services.clients,
            handlers=self.handlers,
            store=self.store,
            start=start,
            metrics=self.services.metrics,
            log=ctx.log,
            stop=stop,
        )
        task = asyncio.create_task(consumer.run(), name=f"kinesis:{self.name}:{shard.id}")
        self.running[shard.id] = _Running(consumer, task, stop)
        self.retry_at.pop(shard.id, None)
        ctx.log.info("reading shard", shard=shard.id, start=str(start), parents=shard.parents)

    async def _reap(self, ctx: WorkerContext) -> None:
        for key, running in list(self.running.items()):
            if not running.task.done():
                continue
            del self.running[key]
            running.consumer.m.forget()
            if running.task.cancelled():
                continue
            exc = running.task.exception()
            if exc is None:
                if running.task.result() == "ended":
                    await self._shard_ended(key)
                continue
            if isinstance(exc, LeaseLost):
                self._lease_lost(ctx, key, "checkpoint refused")
                continue
            self._crashes.inc()
            attempts = self.crashes.setdefault(key, Attempts(Backoff(1.0, self.cfg.retry_max)))
            delay = attempts.next_delay()
            self.retry_at[key] = asyncio.get_running_loop().time() + delay
            self.last_error = f"shard {key}: {type(exc).__name__}: {exc}"
            ctx.log.error(
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
        self._refresh_now = True  # its children may not be listed yet
        if self.leases is not None:
            await self.leases.release(key)
            self._leases_held.set(len(self.leases.held))

    def _discard(self, key: str) -> None:
        for handler in self.handlers:
            if isinstance(handler, BufferingHandler):
                handler.discard(key)

    # --- leases ----------------------------------------------------------------------------------

    async def _lease_round(self, ctx: WorkerContext, now: float) -> None:
        assert self.leases is not None
        for key in await self.leases.renew(now):
            self._lease_lost(ctx, key, "renewal refused or impossible")
        for key in await self.leases.scan(now):
            self._lease_lost(ctx, key, "taken by another daemon")
        for key, lease in self.leases.view.items():
            if key not in self.running:
                self.states[key] = lease_state(lease)
        taken = await self.leases.take(self.leases.plan(now), now)
        for lease in taken:
            self.retry_at.pop(lease.key, None)
        for key in list(self.leases.held):
            if self.leases.ended(key) and key not in self.running:
                await self.leases.release(key)
        self._leases_held.set(len(self.leases.held))
        await self._abort_lost(ctx)

    def _lease_lost(self, ctx: WorkerContext, key: str, why: str) -> None:
        """Stop the shard at once: no further record, no checkpoint."""
        self._lost.inc()
        running = self.running.get(key)
        if running is not None:
            running.task.cancel()
        self._discard(key)
        ctx.log.warning("lease lost; shard stopped", shard=key, reason=why)

    async def _abort_lost(self, ctx: WorkerContext) -> None:
        cancelled = [r.task for r in self.running.values() if r.task.cancelling()]
        if not cancelled:
            return
        # Bounded: the lease loop must keep renewing the other leases whatever a shard does.
        _, stuck = await asyncio.wait(cancelled, timeout=self.cfg.leases.failover_time / 3)
        for task in stuck:
            ctx.log.warning("shard still stopping after its lease was lost", task=task.get_name())
            task.cancel()
        await self._reap(ctx)

    # --- status ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "stream": self.stream,
            "checkpoints": self.cfg.checkpoints.store,
            "shards": {k: r.consumer.health() for k, r in sorted(self.running.items())},
            "ended": sorted(k for k in self.shards if self._ended(k)),
            "waiting_for_parents": self.waiting_for_parents(),
            "last_error": self.last_error,
        }
        if self.leases is not None:
            info["leases"] = {
                "owner": self.leases.owner,
                "held": sorted(self.leases.held),
                "target": self.leases.target,
                "workers": self.leases.workers,
            }
        return info


def _build(name: str, cfg: KinesisReaderConfig, services: Services) -> Worker:
    return KinesisReader(name, cfg, services)


def specs(config: Config) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            name=f"kinesis:{name}",
            kind="kinesis_reader",
            fingerprint=fingerprint(cfg, config.aws, config.env, config.runtime.state_dir),
            build=partial(_build, name, cfg),
        )
        for name, cfg in config.kinesis.readers.items()
    ]


def _iam(config: Config, scope: Scope) -> list[Grant]:
    """What each reader needs: its stream, its archive bucket, its lease table."""
    grants: list[Grant] = []
    for name, reader in config.kinesis.readers.items():
        who = f"kinesis:{name}"
        grants.append(
            Grant(
                who,
                (
                    "kinesis:DescribeStreamSummary",
                    "kinesis:ListShards",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                ),
                (scope.arn_of("streams", reader.stream),),
            )
        )
        if reader.archive is not None:
            bucket = scope.arn_of("buckets", reader.archive.bucket)
            grants.append(Grant(who, ("s3:PutObject",), (f"{bucket}/*",)))
        if reader.checkpoints.store == "dynamodb":
            grants.append(_lease_grant(config, scope, name, reader))
    return grants


_LEASE_ACTIONS = (
    "dynamodb:DescribeTable",
    "dynamodb:Scan",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
)


def _lease_grant(config: Config, scope: Scope, name: str, reader: KinesisReaderConfig) -> Grant:
    """The lease table's items; creating (and tagging) it only when it is the reader's own."""
    ref = reader.leases.table
    if lease_table_declared_or_external(config, ref):
        assert ref is not None
        return Grant(f"kinesis:{name}", _LEASE_ACTIONS, (scope.arn_of("tables", ref),))
    table = lease_table(config, name)
    arn = f"arn:{scope.partition}:dynamodb:{scope.region}:{scope.account}:table/{table}"
    actions = ("dynamodb:CreateTable", "dynamodb:TagResource", *_LEASE_ACTIONS)
    return Grant(f"kinesis:{name}", actions, (arn,))


CONTRIBUTORS.append(_iam)
