"""A fleet sharing a stream: shard leases in DynamoDB, taken, renewed and balanced the way the
Kinesis Client Library does it (built on the generic `daemon.core.leases`).

Each shard has one lease item (key = shard id) holding its owner, counter, checkpoint, parents
and how often its owner changed since the last checkpoint. Every round (a third of
`failover_time`) a daemon:
1. renews the leases it holds (a conditional counter increment); a lease whose renewal is refused,
   or that could not be renewed for `failover_time`, is lost: its shard stops at once and is never
   checkpointed again (checkpoints are writes conditional on ownership);
2. scans the table and judges expiry by counters that stopped changing for `failover_time` as
   seen by its own monotonic clock (no clock comparison across hosts);
3. aims at ceil(leases / workers) leases, counting the workers that own live leases: it takes
   expired or free leases first and, when none are left, steals at most one lease per round from
   the most loaded worker (only if that worker is above the target, or at it while we need more
   than one).
Leases of finished shards (`SHARD_END`) are released and no longer counted.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from daemon.core.leases import ExpiryTracker, Lease, LeaseTable
from daemon.kinesis.checkpoints import (
    SHARD_END,
    Checkpoint,
    CheckpointStore,
    LeaseLost,
    ShardState,
)

CHECKPOINT = "checkpoint"
SUBSEQUENCE = "checkpoint_subsequence"
PARENTS = "parent_shard_ids"
SWITCHES = "owner_switches"


def lease_checkpoint(lease: Lease) -> Checkpoint:
    return Checkpoint(
        str(lease.attrs.get(CHECKPOINT, "TRIM_HORIZON")), int(lease.attrs.get(SUBSEQUENCE) or 0)
    )


def lease_state(lease: Lease) -> ShardState:
    return ShardState(lease_checkpoint(lease), tuple(lease.attrs.get(PARENTS) or ()))


def is_finished(lease: Lease) -> bool:
    return lease.attrs.get(CHECKPOINT) == SHARD_END


class ShardLeases:
    """This daemon's view of the lease table and the leases it holds."""

    def __init__(
        self,
        table: LeaseTable,
        *,
        failover_time: float,
        max_leases: int,
        log: Any,
        rng: random.Random | None = None,
    ) -> None:
        self.table = table
        self.failover_time = failover_time
        self.max_leases = max_leases
        self.log = log
        self.tracker = ExpiryTracker(failover_time)
        self.held: dict[str, Lease] = {}
        self.renewed_at: dict[str, float] = {}
        self.view: dict[str, Lease] = {}
        """The table as of the last scan."""
        self.workers = 1
        self.target = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._rng = rng or random.Random()

    @property
    def owner(self) -> str:
        return self.table.owner

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # --- renewing --------------------------------------------------------------------------------

    async def renew(self, now: float) -> list[str]:
        """Renew every held lease; return the keys lost (refused, or silent for too long)."""
        lost: list[str] = []
        for key in list(self.held):
            async with self._lock(key):
                lease = self.held.get(key)
                if lease is None:
                    continue
                try:
                    renewed = await self.table.renew(lease)
                except Exception as exc:  # noqa: BLE001 - judged by how long renewals failed
                    if now - self.renewed_at.get(key, now) >= self.failover_time:
                        self.log.warning(
                            "lease could not be renewed for failover_time; giving it up",
                            shard=key,
                            error=str(exc),
                        )
                        self._drop(key)
                        lost.append(key)
                    continue
                if renewed is None:
                    self._drop(key)
                    lost.append(key)
                else:
                    self.held[key] = replace(renewed, attrs=self.held[key].attrs)
                    self.renewed_at[key] = now
        return lost

    def _drop(self, key: str) -> None:
        self.held.pop(key, None)
        self.renewed_at.pop(key, None)

    # --- taking ----------------------------------------------------------------------------------

    async def scan(self, now: float) -> list[str]:
        """Read the table; return held keys the table shows with another owner (lost)."""
        leases = await self.table.list()
        self.tracker.observe(leases, now)
        self.view = {lease.key: lease for lease in leases}
        lost = [k for k in self.held if self.view.get(k) and self.view[k].owner != self.owner]
        for key in lost:
            self._drop(key)
        return lost

    def plan(self, now: float) -> list[Lease]:
        """The leases to take this round (from the last scan)."""
        live = [lease for lease in self.view.values() if not is_finished(lease)]
        if not live:
            self.target = 0
            return []
        # Free or expired leases, and leases the table says are ours that we do not hold (we
        # gave them up after failing to renew them, or an earlier run had our worker id): a take
        # is conditional on the counter, so taking one that moved on simply fails.
        available = [
            lease
            for lease in live
            if lease.key not in self.held
            and (lease.owner == self.owner or self.tracker.expired(lease, now))
        ]
        counts: Counter[str] = Counter(
            lease.owner
            for lease in live
            if lease.owner is not None and not self.tracker.expired(lease, now)
        )
        counts[self.owner] = sum(1 for lease in live if lease.key in self.held)
        self.workers = len(counts)
        target = 1 if self.workers >= len(live) else math.ceil(len(live) / self.workers)
        self.target = target = min(target, self.max_leases)
        needed = target - counts[self.owner]
        if needed <= 0:
            return []
        if available:
            self._rng.shuffle(available)
            return available[:needed]
        return self._to_steal(live, counts, needed, target)

    def _to_steal(
        self, live: list[Lease], counts: Counter[str], needed: int, target: int
    ) -> list[Lease]:
        most, load = max(
            ((w, c) for w, c in counts.items() if w != self.owner),
            key=lambda wc: wc[1],
            default=(None, 0),
        )
        if most is None or load < target or (load == target and needed <= 1):
            return []
        candidates = [lease for lease in live if lease.owner == most]
        return [self._rng.choice(candidates)] if candidates else []

    async def take(self, leases: list[Lease], now: float) -> list[Lease]:
        """Try to take `leases`; return those taken (others changed since they were seen)."""
        taken: list[Lease] = []
        for planned in leases:
            lease = planned
            stealing = lease.owner not in (None, self.owner) and not self.tracker.expired(
                lease, now
            )
            if stealing:
                # Its owner renews it every few seconds: the counter from the scan is likely
                # stale by now, and a take conditional on it would keep failing (the KCL reads
                # leases marked for stealing again too). Steal what the table holds now.
                fresh = await self.table.get(lease.key)
                if fresh is None or fresh.owner != lease.owner:
                    continue
                lease = fresh
            got = await self.table.take(lease, increment=(SWITCHES,))
            if got is None:
                continue
            self.held[got.key] = got
            self.renewed_at[got.key] = now
            self.view[got.key] = got
            if lease.owner and lease.owner != self.owner:
                self.log.info(
                    "lease stolen" if stealing else "lease taken",
                    shard=lease.key,
                    previous_owner=lease.owner,
                    target=self.target,
                    workers=self.workers,
                )
            else:
                self.log.info("lease taken", shard=lease.key, target=self.target)
            taken.append(got)
        return taken

    # --- checkpoints and release -----------------------------------------------------------------

    async def checkpoint(self, key: str, checkpoint: Checkpoint) -> None:
        async with self._lock(key):
            lease = self.held.get(key)
            if lease is None:
                raise LeaseLost(key)
            attrs = {
                CHECKPOINT: checkpoint.position,
                SUBSEQUENCE: checkpoint.subsequence,
                SWITCHES: 0,
                "checkpointed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            updated = await self.table.update(lease, attrs)
            if updated is None:
                self._drop(key)
                raise LeaseLost(key)
            self.held[key] = replace(self.held[key], attrs={**self.held[key].attrs, **attrs})

    async def release(self, key: str) -> None:
        """Give up a held lease (its shard finished, or we are stopping)."""
        async with self._lock(key):
            lease = self.held.get(key)
            if lease is None:
                return
            self._drop(key)
            try:
                await self.table.release(lease)
            except Exception as exc:  # noqa: BLE001 - it then expires on its own
                self.log.warning("lease release failed", shard=key, error=str(exc))

    def ended(self, key: str) -> bool:
        """Whether the table (last scan, or our own checkpoint) says the shard was finished."""
        lease = self.held.get(key) or self.view.get(key)
        return lease is not None and is_finished(lease)


class LeaseCheckpoints(CheckpointStore):
    """Checkpoints kept in the lease items themselves, written only while the lease is held."""

    def __init__(self, leases: ShardLeases, *, stream: str) -> None:
        self.leases = leases
        self.stream = stream

    async def load(self) -> dict[str, ShardState]:
        return {lease.key: lease_state(lease) for lease in await self.leases.table.list()}

    async def create(self, initial: dict[str, ShardState]) -> None:
        for shard, state in initial.items():
            await self.leases.table.create(
                shard,
                {
                    CHECKPOINT: state.checkpoint.position,
                    SUBSEQUENCE: state.checkpoint.subsequence,
                    PARENTS: list(state.parents),
                    SWITCHES: 0,
                    "stream": self.stream,
                },
            )

    async def save(self, shard: str, checkpoint: Checkpoint) -> None:
        await self.leases.checkpoint(shard, checkpoint)

    async def forget(self, shards: list[str]) -> None:
        for shard in shards:
            await self.leases.table.delete(shard)
