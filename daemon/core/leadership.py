"""Who may do something only one daemon of a fleet should do (reconcile an environment).

A daemon alone is always the leader (`SingleDaemon`). In a fleet, the leader is the holder of a
lease in a DynamoDB table (`LeaseLeadership` over `daemon.core.leases.LeaderLease`: conditional
writes, expiry judged by counter changes seen locally). Once asked, it keeps stepping the lease
in the background every third of the failover time, so the holder renews and the others notice a
dead holder; a lease it cannot reach counts as not held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from daemon.base.awserrors import describe_error
from daemon.core.aws import AwsClients
from daemon.core.leases import LeaderLease, LeaseTable, default_owner


class Leadership(Protocol):
    """Who may reconcile in a fleet: asked before every pass."""

    async def is_leader(self) -> bool: ...

    async def release(self) -> None: ...


class SingleDaemon:
    """A daemon alone is always the leader."""

    async def is_leader(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class LeaseLeadership:
    """The holder of lease `key` in a DynamoDB table (see the module docstring); `table` gives
    the table's AWS name when first needed, `tags` those to create it with (None: the table is
    not ours to create)."""

    def __init__(
        self,
        clients: AwsClients,
        *,
        table: Callable[[], Awaitable[str]],
        key: str,
        failover: float,
        tags: dict[str, str] | None,
        log: Any,
        what: str = "reconciler",
    ) -> None:
        self.clients = clients
        self.table = table
        self.key = key
        self.failover = failover
        self.tags = tags
        self.what = what
        self.log = log
        self.leading = False
        self._lease: LeaderLease | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._announced: bool | None = None

    async def _lease_object(self) -> LeaderLease:
        if self._lease is None:
            table = LeaseTable(self.clients, await self.table(), default_owner(), tags=self.tags)
            await table.ensure_table()
            self._lease = LeaderLease(table, self.key, self.failover)
        return self._lease

    async def _step(self) -> bool:
        async with self._lock:  # the background renewal and a pass never step at once
            was = self.leading
            try:
                lease = await self._lease_object()
                self.leading = bool(await lease.step(asyncio.get_running_loop().time()))
            except Exception as exc:  # noqa: BLE001 - an unreachable lease is not held
                if was or self._announced is None:
                    self.log.warning(f"{self.what} lease unavailable", error=describe_error(exc))
                self.leading = False
            if self.leading != self._announced:
                self._announced = self.leading
                self.log.info(
                    f"{self.what}: this daemon holds the lease"
                    if self.leading
                    else f"standing by: another daemon holds the {self.what} lease"
                )
            return self.leading

    async def _keep_stepping(self) -> None:
        while True:
            await asyncio.sleep(self.failover / 3)
            await self._step()

    async def is_leader(self) -> bool:
        """Step the lease now (a fresh answer for the pass about to run)."""
        leading = await self._step()
        if self._task is None:
            self._task = asyncio.create_task(self._keep_stepping(), name=f"{self.what}-lease")
        return leading

    async def release(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._lease is not None and self.leading:
            async with self._lock:
                with contextlib.suppress(Exception):  # it expires by itself when unreachable
                    await self._lease.release()
        self.leading = False
