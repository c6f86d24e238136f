"""The Kinesis reader: every shard of one stream, one task per shard, in lineage order.

It resolves the names the config gives (stream, archive bucket, lease table), builds the handlers
(the configured one and the S3 archive), opens the checkpoint store (SQLite, or the DynamoDB lease
table of a fleet), then turns the loop of `Shards` (`scheduler.py`): reap finished consumers, list
the shards every `shard_refresh_interval` and at once when a shard ends, renew and balance leases
every third of the failover time (and at once when a shard ends), start the shards that may run,
and sleep until the next of these is due or something wakes it (a consumer finishing, a hand-off
request, a stop). A graceful stop lets every shard finish its current record, flush the archive
and write its checkpoint, then releases the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from daemon.base.awserrors import describe_error, error_code
from daemon.base.retry import Attempts, Backoff
from daemon.config.kinesis import KinesisReaderConfig, lease_table, lease_table_declared_or_external
from daemon.core.leases import LeaseTable, default_owner
from daemon.handlers import Handler, build_handler
from daemon.kinesis.archive import S3Archive
from daemon.kinesis.checkpoints import CheckpointStore, SqliteCheckpoints
from daemon.kinesis.leasing import LeaseCheckpoints, ShardLeases
from daemon.kinesis.scheduler import Shards
from daemon.services import Services
from daemon.worker import Worker, WorkerContext


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
        self.table = lease_table(cfg, name, services.config.env)
        """The lease table's AWS name, once resolved."""
        self.own_table = not lease_table_declared_or_external(
            cfg.leases.table, services.config.resources.tables
        )
        """Whether the lease table is the reader's own, which it creates when missing (a declared
        one is the reconciler's to create, an ARN somebody else's)."""
        self.handlers: list[Handler] = []
        self.store: CheckpointStore | None = None
        self.leases: ShardLeases | None = None
        self.shards: Shards | None = None
        self.last_error: str | None = None
        self._wake = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self, ctx: WorkerContext) -> None:
        try:
            if not await self._resolve(ctx):
                return
            self.handlers = self._build_handlers(ctx)
            if not await self._setup(ctx):
                return
            assert self.store is not None
            self.shards = Shards(
                self.name,
                self.cfg,
                stream=self.stream,
                clients=self.services.clients,
                metrics=self.services.metrics,
                handlers=self.handlers,
                store=self.store,
                leases=self.leases,
                report=self,
                log=ctx.log,
                wake=self._wake.set,
            )
            await self._loop(ctx, self.shards)
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

    def _build_handlers(self, ctx: WorkerContext) -> list[Handler]:
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
            self.store = SqliteCheckpoints(
                path, reader=self.name, stream=self.stream, health=self.services.storage
            )
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

    async def _loop(self, ctx: WorkerContext, shards: Shards) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = next_lease_round = 0.0
        refresh_tries = Attempts(Backoff(1.0, self.cfg.retry_max))
        lease_tries = Attempts(Backoff(0.5, self.cfg.leases.failover_time / 3))
        tick = self.cfg.leases.failover_time / 3
        while not ctx.stopping:
            ctx.beat()
            self._wake.clear()  # anything that wakes us from here on cuts the next sleep short
            await shards.reap()  # a shard that ended asks for a listing and a lease round now
            if shards.refresh_now or loop.time() >= next_refresh:
                shards.refresh_now = False
                began = loop.time()
                if await self._guard(ctx, "listing shards", shards.refresh()):
                    refresh_tries.reset()
                    next_refresh = began + self.cfg.shard_refresh_interval
                else:
                    next_refresh = loop.time() + refresh_tries.next_delay()
            if self.fleet and (shards.lease_round_now or loop.time() >= next_lease_round):
                shards.lease_round_now = False
                began = loop.time()  # rounds start every tick, however long one takes
                if await self._guard(ctx, "lease round", shards.lease_round()):
                    lease_tries.reset()
                    next_lease_round = began + tick
                else:
                    next_lease_round = loop.time() + lease_tries.next_delay()
            await shards.schedule()
            if shards.refresh_now or shards.lease_round_now:
                continue  # a lease round took a shard not listed yet
            wake = [next_refresh, *shards.retry_at.values()]
            if self.fleet:
                wake.append(next_lease_round)
            await self._sleep(ctx, shards, max(0.0, min(wake) - loop.time()))

    async def _sleep(self, ctx: WorkerContext, shards: Shards, seconds: float) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(ctx.stop.wait())]
        try:
            await asyncio.wait(
                [*waiters, *shards.tasks], timeout=seconds, return_when="FIRST_COMPLETED"
            )
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
        if self.shards is not None:
            await self.shards.stop(ctx.stop.deadline, ctx.stop.remaining(10.0))
        if self.store is not None:
            await self.store.close()
        for handler in self.handlers:
            with contextlib.suppress(Exception):
                await handler.close()

    # --- status ----------------------------------------------------------------------------------

    @property
    def running(self) -> dict[str, Any]:
        """The shards being read now, by shard id."""
        return dict(self.shards.running) if self.shards else {}

    def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "stream": self.stream,
            "checkpoints": self.cfg.checkpoints.store,
            **(
                self.shards.health()
                if self.shards
                else {"shards": {}, "ended": [], "waiting_for_parents": []}
            ),
            "last_error": self.last_error,
        }
        if self.leases is not None:
            info["leases"] = {
                "owner": self.leases.owner,
                "held": sorted(self.leases.held),
                "target": self.leases.target,
                "workers": self.leases.workers,
                "handing_over": sorted(self.leases.handoffs),
                "asked_for": sorted(self.leases.requested),
            }
        return info
