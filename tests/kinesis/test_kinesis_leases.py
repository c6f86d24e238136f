"""A fleet's shard leases in process, against a real moto DynamoDB, on clocks the tests drive:
steals as hand-offs, the fallback when an owner does not answer, expiry judged from what scans
really saw, children taken after their parents, and a consumer that is not mistaken for one
whose lease was lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.base.stop import StopToken
from daemon.config.kinesis import KinesisReaderConfig
from daemon.config.models import AwsConfig
from daemon.core.aws import AwsClients
from daemon.core.leases import Lease, LeaseTable
from daemon.core.logs import get_logger
from daemon.core.metrics import Registry
from daemon.core.shards import ShardInfo
from daemon.kinesis.checkpoints import SHARD_END, Checkpoint, ShardState
from daemon.kinesis.consumer import ShardConsumer
from daemon.kinesis.leasing import CHECKPOINT, LeaseCheckpoints, ShardLeases
from daemon.kinesis.scheduler import Shards, _Running

FAILOVER = 10.0


class Clock:
    """Monotonic time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowScans(LeaseTable):
    """A lease table whose scans take `scan_seconds` of the test's clock (a loaded machine, a
    slow network): the time passes between the call's start and its answer."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.scan_seconds = 0.0

    async def list(self) -> list[Lease]:
        leases = await super().list()
        self.clock.now += self.scan_seconds
        return leases


@pytest.fixture
async def clients(moto_endpoint: str) -> AsyncIterator[AwsClients]:
    clients = AwsClients(AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    yield clients
    await clients.close()


class Fleet:
    """Two daemons' lease coordinators, `a` and `b`, on one new table and one test clock."""

    def __init__(self, clients: AwsClients) -> None:
        self.clock = Clock()
        self.name = f"leases-{uuid.uuid4().hex[:8]}"
        self.handoffs: dict[str, list[str]] = {"a": [], "b": []}
        self.a = self._leases(clients, "a")
        self.b = self._leases(clients, "b")

    def _leases(self, clients: AwsClients, owner: str) -> ShardLeases:
        table = SlowScans(clients, self.name, owner, clock=self.clock)
        leases = ShardLeases(
            table, failover_time=FAILOVER, max_leases=100, log=get_logger(), clock=self.clock
        )
        leases.on_handoff = self.handoffs[owner].append
        return leases

    async def create(self, *shards: str, parents: dict[str, list[str]] | None = None) -> None:
        await self.a.table.ensure_table()
        store = LeaseCheckpoints(self.a, stream="s")
        await store.create(
            {
                s: ShardState(Checkpoint("TRIM_HORIZON"), tuple((parents or {}).get(s, ())))
                for s in shards
            }
        )

    @staticmethod
    async def round(leases: ShardLeases) -> list[str]:
        """One lease round as the reader runs it: renew, scan, take; the keys taken."""
        await leases.renew()
        await leases.scan()
        return sorted(lease.key for lease in await leases.take(leases.plan()))


@pytest.fixture
async def fleet(clients: AwsClients) -> Fleet:
    return Fleet(clients)


async def test_a_steal_is_a_hand_off_the_owner_sees_at_its_next_renewal(fleet: Fleet):
    await fleet.create("s0", "s1")
    assert await fleet.round(fleet.a) == ["s0", "s1"]
    await fleet.a.checkpoint("s0", Checkpoint("41"))
    await fleet.a.checkpoint("s1", Checkpoint("42"))

    fleet.clock.now = 1.0
    assert await fleet.round(fleet.b) == []  # asked for, not taken: a still reads it
    (asked,) = fleet.b.requested
    assert fleet.a.held.keys() == {"s0", "s1"}

    fleet.clock.now = 3.0
    await fleet.a.renew()  # the answer to a's renewal carries the request
    assert fleet.handoffs["a"] == [asked] and fleet.a.handoffs == {asked: "b"}
    assert await fleet.a.hand_over(asked)  # (its shard stopped and checkpointed meanwhile)
    assert asked not in fleet.a.held

    fleet.clock.now = 4.0
    assert await fleet.round(fleet.b) == [asked]
    lease = fleet.b.held[asked]
    assert lease.owner == "b" and lease.handoff is None
    assert lease.attrs[CHECKPOINT] == ("41" if asked == "s0" else "42")  # resumes after it
    assert fleet.b.requested == {}


async def test_a_checkpoint_shows_a_hand_off_request_too(fleet: Fleet):
    await fleet.create("s0", "s1")
    await fleet.round(fleet.a)
    fleet.clock.now = 1.0
    await fleet.round(fleet.b)
    (asked,) = fleet.b.requested
    await fleet.a.checkpoint(asked, Checkpoint("7"))  # before a's next renewal
    assert fleet.handoffs["a"] == [asked]


async def test_an_owner_that_leaves_a_hand_off_unanswered_loses_the_lease_after_failover_time(
    fleet: Fleet,
):
    await fleet.create("s0", "s1")
    await fleet.round(fleet.a)
    fleet.clock.now = 1.0
    await fleet.round(fleet.b)
    (asked,) = fleet.b.requested
    # `a` keeps renewing (it is alive: its leases never expire) but never hands over, as an
    # older awsd would not.
    for now in (4.0, 7.0, 10.0):
        fleet.clock.now = now
        await fleet.a.renew()
        assert await fleet.round(fleet.b) == []
    fleet.clock.now = 11.5
    await fleet.a.renew()
    assert await fleet.round(fleet.b) == [asked]  # stolen outright
    assert await fleet.a.renew() == [asked]  # and `a` learns it at its next renewal


async def test_a_slow_scan_never_makes_a_live_lease_look_expired(fleet: Fleet):
    await fleet.create("s0")
    await fleet.round(fleet.a)  # `a` renews at t = 0 and then falls silent
    table = fleet.b.table
    assert isinstance(table, SlowScans)
    table.scan_seconds = 6.0  # b's first scan takes 6 s (from t = 0 to t = 6)
    await fleet.b.scan()
    table.scan_seconds = 0.0
    fleet.clock.now = 10.0  # 10 s since that scan started, 4 s since it saw the counter
    await fleet.b.scan()
    assert fleet.b.plan() == []  # counting from the scan's start would call it expired
    fleet.clock.now = 16.0  # 10 s since the counter was seen: silent long enough
    await fleet.b.scan()
    assert [lease.key for lease in fleet.b.plan()] == ["s0"]


async def test_children_are_taken_only_once_their_parents_are_finished(fleet: Fleet):
    await fleet.create("p", "c1", "c2", parents={"c1": ["p"], "c2": ["p"]})
    await fleet.a.table.ensure_table()
    await fleet.a.scan()
    parent = fleet.a.view["p"]
    assert await fleet.a.take([parent]) != []
    await fleet.b.scan()
    assert fleet.b.plan() == []  # the children would wait: nothing worth taking
    await fleet.a.checkpoint("p", Checkpoint(SHARD_END))
    await fleet.b.scan()
    assert sorted(lease.key for lease in fleet.b.plan()) == ["c1", "c2"]


async def test_a_consumer_taking_back_a_timeouts_cancel_is_not_stopped_as_lease_lost(
    tmp_path: Any,
):
    """A timeout inside a shard consumer (its idle wait, an HTTP read) cancels the consumer's
    task for a moment, then takes the cancel back. A reader that took every cancelling task for
    one whose lease was lost killed healthy consumers, which then read again from their last
    checkpoint (records handled twice)."""
    cfg = KinesisReaderConfig.model_validate(
        {"stream": "s", "handler": {"kind": "log"}, "checkpoints": {"store": "dynamodb"}}
    )
    shards = Shards(
        "r",
        cfg,
        stream="s",
        clients=None,  # type: ignore[arg-type] - nothing is called
        metrics=Registry(),
        handlers=[],
        store=None,  # type: ignore[arg-type]
        leases=None,
        report=type("Report", (), {"last_error": None})(),
        log=get_logger(),
    )
    shard = ShardInfo("s0", (), 0, 1, "0", None)
    stop = StopToken()
    consumer = ShardConsumer(
        reader="r",
        stream="s",
        shard=shard,
        cfg=cfg,
        clients=None,
        handlers=[],
        store=None,  # type: ignore[arg-type]
        start=Checkpoint("TRIM_HORIZON"),
        metrics=Registry(),
        log=get_logger(),
        stop=stop,
    )
    taken_back = asyncio.Event()

    async def reading() -> str:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                assert task is not None
                if taken_back.is_set():
                    raise  # any other cancel ends it, as it ends a real consumer
                task.uncancel()  # what asyncio.timeout does when its own deadline passed
                taken_back.set()

    task = asyncio.create_task(reading())
    shards.running["s0"] = _Running(consumer, task, stop)
    await asyncio.sleep(0)
    task.cancel()  # the timeout fires; the consumer has not run yet to take it back
    assert task.cancelling() == 1
    await shards._abort_lost()  # the end of a lease round
    await taken_back.wait()
    await asyncio.sleep(0)
    assert not task.done() and "s0" in shards.running
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
