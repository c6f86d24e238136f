"""A fleet sharing a stream: shard leases in DynamoDB, taken, renewed and balanced the way the
Kinesis Client Library does it (built on the generic `daemon.core.leases`).

Each shard has one lease item (key = shard id) holding its owner, counter, checkpoint, parents
and how often its owner changed since the last checkpoint. Every round (a third of
`failover_time`) a daemon:
1. renews the leases it holds (a conditional counter increment); a lease whose renewal is refused,
   or that could not be renewed for `failover_time`, is lost: its shard stops at once and is never
   checkpointed again (checkpoints are writes conditional on ownership);
2. scans the table and judges expiry by counters that stopped changing for `failover_time` as
   seen by its own monotonic clock (no clock comparison across hosts): a counter counts as first
   seen when the scan that saw it had finished, and silence is judged when the next scan starts,
   so a slow call or a busy loop never makes a live lease look older than it is;
3. aims at ceil(leases / workers) leases, counting the workers that own live leases: it takes
   expired or free leases first and, when none are left, steals at most one lease per round from
   the most loaded worker (only if that worker is above the target, or at it while we need more
   than one).
A steal is a hand-off, so no record is handled by both daemons: the thief asks the owner
(`request_handoff`); the owner sees the request in the answer to its next renewal or checkpoint,
stops fetching at once, finishes the record in hand, writes its checkpoint and makes the thief
the owner (`hand_over`); the thief takes it at its next round and starts after that checkpoint.
An owner that does not answer within `failover_time` (an older awsd, or one that is stuck) has
the lease taken from it the old way. A lease taken because it expired is the one case where the
old owner, if it was alive after all, handles records the new one handles again: what it handled
since its last checkpoint (at most `every_records` per shard), and until its next checkpoint or
renewal shows the lease gone. Children of a resharded shard are taken only once their parents
are finished (a lease held while waiting would count against the balance and read nothing).
Leases of finished shards (`SHARD_END`) are released and no longer counted.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Callable
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


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


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
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.table = table
        self.failover_time = failover_time
        self.max_leases = max_leases
        self.log = log
        self.clock = clock or _loop_time
        """Monotonic seconds (the event loop's clock; tests inject their own)."""
        self.tracker = ExpiryTracker(failover_time)
        self.held: dict[str, Lease] = {}
        self.renewed_at: dict[str, float] = {}
        self.view: dict[str, Lease] = {}
        """The table as of the last scan."""
        self.scanned_at = 0.0
        """When the last scan started: the time expiry is judged at."""
        self.requested: dict[str, tuple[str, float]] = {}
        """Hand-offs we asked for: shard -> (the owner asked, when)."""
        self.handoffs: dict[str, str] = {}
        """Hand-offs asked of us: shard -> the worker to hand it to."""
        self.on_handoff: Callable[[str], None] = lambda key: None
        """Called when a renewal or a checkpoint shows a hand-off request for a held lease."""
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

    async def renew(self) -> list[str]:
        """Renew every held lease; return the keys lost (refused, or silent for too long).
        A hand-off request seen in a renewal is noted and reported (`on_handoff`)."""
        lost: list[str] = []
        for key in list(self.held):
            async with self._lock(key):
                lease = self.held.get(key)
                if lease is None:
                    continue
                began = self.clock()
                try:
                    renewed = await self.table.renew(lease)
                except Exception as exc:  # noqa: BLE001 - judged by how long renewals failed
                    now = self.clock()
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
                    continue
                self.held[key] = replace(renewed, attrs=self.held[key].attrs)
                # Its write may have landed as early as the call started: others count the
                # silence from then on, and so must we before we give the lease up.
                self.renewed_at[key] = began
            self._note_handoff(renewed)
        return lost

    def _note_handoff(self, lease: Lease) -> None:
        if lease.handoff and lease.handoff != self.owner and lease.key not in self.handoffs:
            self.handoffs[lease.key] = lease.handoff
            self.log.info("hand-off requested", shard=lease.key, to=lease.handoff)
            self.on_handoff(lease.key)

    def _drop(self, key: str) -> None:
        self.held.pop(key, None)
        self.renewed_at.pop(key, None)
        self.handoffs.pop(key, None)

    # --- taking ----------------------------------------------------------------------------------

    async def scan(self) -> list[str]:
        """Read the table; return held keys the table shows with another owner (lost)."""
        started = self.clock()
        leases = await self.table.list()
        # First seen once the scan is over, judged at the next scan's start: the silence a
        # lease is blamed for is never longer than the one observed.
        self.tracker.observe(leases, self.clock())
        self.scanned_at = started
        self.view = {lease.key: lease for lease in leases}
        lost = [k for k in self.held if self.view.get(k) and self.view[k].owner != self.owner]
        for key in lost:
            self._drop(key)
        for key, (owner, _) in list(self.requested.items()):
            lease = self.view.get(key)
            if lease is None or lease.owner != owner or is_finished(lease):
                del self.requested[key]  # handed over to us, taken by another, or done
        return lost

    def _parents_done(self, lease: Lease) -> bool:
        """A child shard's lease is worth holding only once its parents were read to their end
        (a parent missing from the table was trimmed from the stream)."""
        for parent in lease.attrs.get(PARENTS) or ():
            known = self.view.get(parent)
            if known is not None and not is_finished(known):
                return False
        return True

    def plan(self, now: float | None = None) -> list[Lease]:
        """The leases to take this round (from the last scan), judged at `now` (default: when
        the last scan started). A lease to steal is asked for (`take` requests the hand-off)."""
        now = self.scanned_at if now is None else now
        live = [lease for lease in self.view.values() if not is_finished(lease)]
        if not live:
            self.target = 0
            return []
        # Free or expired leases, and leases the table says are ours that we do not hold (we
        # gave them up after failing to renew them, an earlier run had our worker id, or their
        # owner handed them over to us): a take is conditional on the counter, so taking one
        # that moved on simply fails.
        available = [
            lease
            for lease in live
            if lease.key not in self.held
            and (lease.owner == self.owner or self.tracker.expired(lease, now))
            and self._parents_done(lease)
        ]
        counts: Counter[str] = Counter(
            lease.owner
            for lease in live
            if lease.owner is not None and not self.tracker.expired(lease, now)
        )
        counts[self.owner] = sum(1 for lease in live if lease.key in self.held)
        # A hand-off we asked for is as good as ours (its owner still counts it too).
        counts[self.owner] += len(self.requested)
        self.workers = len(counts)
        target = 1 if self.workers >= len(live) else math.ceil(len(live) / self.workers)
        self.target = target = min(target, self.max_leases)
        # A hand-off its owner left unanswered for failover_time: `take` steals it.
        overdue = [
            self.view[key]
            for key, (owner, since) in self.requested.items()
            if now - since >= self.failover_time and self.view[key].owner == owner
        ]
        if overdue:
            return overdue
        needed = target - counts[self.owner]
        if needed <= 0:
            return []
        if available:
            self._rng.shuffle(available)
            return available[:needed]
        if self.requested:
            return []  # one steal at a time: the last one is still being handed over
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
        candidates = [
            lease
            for lease in live
            if lease.owner == most and lease.handoff is None and self._parents_done(lease)
        ]
        return [self._rng.choice(candidates)] if candidates else []

    async def take(self, leases: list[Lease], now: float | None = None) -> list[Lease]:
        """Take `leases` (free, expired, or ours in the table); a lease another worker holds is
        asked for instead (a hand-off), and taken only when its owner left the request
        unanswered for `failover_time`. Return those taken (others changed since seen)."""
        now = self.scanned_at if now is None else now
        taken: list[Lease] = []
        for planned in leases:
            lease = planned
            stealing = lease.owner not in (None, self.owner) and not self.tracker.expired(
                lease, now
            )
            if stealing:
                # Its owner renews it every few seconds: the counter from the scan is likely
                # stale by now; ask for (or steal) what the table holds now.
                fresh = await self.table.get(lease.key)
                if fresh is None or fresh.owner != lease.owner:
                    continue
                lease = fresh
                if not await self._unanswered(lease, now):
                    continue
            got = await self.table.take(lease, increment=(SWITCHES,))
            if got is None:
                continue
            self.requested.pop(got.key, None)
            self.held[got.key] = got
            self.renewed_at[got.key] = self.clock()
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

    async def _unanswered(self, lease: Lease, now: float) -> bool:
        """Ask for a hand-off of `lease` (held by another worker); True once the request went
        unanswered for `failover_time` (then it is taken outright)."""
        asked = self.requested.get(lease.key)
        if asked is not None and asked[0] == lease.owner:
            if now - asked[1] < self.failover_time:
                return False
            self.log.warning(
                "hand-off not answered within failover_time; taking the lease",
                shard=lease.key,
                owner=lease.owner,
            )
            return True
        assert lease.owner is not None
        if await self.table.request_handoff(lease):
            self.requested[lease.key] = (lease.owner, self.clock())
            self.log.info(
                "hand-off asked for",
                shard=lease.key,
                owner=lease.owner,
                target=self.target,
                workers=self.workers,
            )
        return False

    async def hand_over(self, key: str) -> bool:
        """Give a held lease to the worker that asked for it (its shard has stopped and written
        its checkpoint); False when it was no longer ours."""
        async with self._lock(key):
            lease, to = self.held.get(key), self.handoffs.get(key)
            if lease is None or to is None:
                return False
            self._drop(key)
            try:
                done = await self.table.hand_over(lease, to, increment=(SWITCHES,))
            except Exception as exc:  # noqa: BLE001 - then it expires and is taken
                self.log.warning("hand-off failed", shard=key, to=to, error=str(exc))
                return False
            if done:
                self.log.info("lease handed over", shard=key, to=to)
            return done

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
        self._note_handoff(updated)

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
