"""KCL-style leases against a real moto DynamoDB: conditional writes and local expiry."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from daemon.config.models import AwsConfig
from daemon.core.aws import AwsClients
from daemon.core.leases import ExpiryTracker, LeaderLease, Lease, LeaseTable


@pytest.fixture
async def clients(moto_endpoint: str) -> AsyncIterator[AwsClients]:
    clients = AwsClients(AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    yield clients
    await clients.close()


@pytest.fixture
async def tables(clients: AwsClients) -> tuple[LeaseTable, LeaseTable]:
    name = f"leases-{uuid.uuid4().hex[:8]}"
    a = LeaseTable(clients, name, "host-a:1:aa", tags={"managed-by": "awsd"})
    await a.ensure_table()
    await a.ensure_table()  # idempotent
    return a, LeaseTable(clients, name, "host-b:2:bb")


async def test_only_one_of_two_owners_can_take_the_same_observation(tables):
    a, b = tables
    lease = await a.create("shard-0", {"checkpoint": "TRIM_HORIZON", "parents": ["p1", "p2"]})
    assert lease is not None and await b.create("shard-0") is None
    taken_by_a = await a.take(lease)
    taken_by_b = await b.take(lease)  # b observed the same counter: must fail
    assert taken_by_a is not None and taken_by_b is None
    stored = await a.get("shard-0")
    assert stored is not None
    assert (stored.owner, stored.counter) == ("host-a:1:aa", 1)
    assert stored.attrs == {"checkpoint": "TRIM_HORIZON", "parents": ["p1", "p2"]}


async def test_renew_fails_once_the_lease_was_stolen_and_checkpoints_are_refused(tables):
    a, b = tables
    lease = await a.take(await a.create("shard-1") or Lease("shard-1", None, 0))
    assert lease is not None
    lease = await a.renew(lease)
    assert lease is not None and lease.counter == 2
    assert await a.update(lease, {"checkpoint": "49590"}) is not None
    observed = await b.get("shard-1")
    assert observed is not None
    stolen = await b.take(observed)
    assert stolen is not None and stolen.owner == "host-b:2:bb"
    assert await a.renew(lease) is None
    assert await a.update(lease, {"checkpoint": "49999"}) is None  # no checkpoint after loss
    after = await b.get("shard-1")
    assert after is not None and after.attrs["checkpoint"] == "49590"


async def test_release_frees_the_lease(tables):
    a, _ = tables
    lease = await a.take(await a.create("shard-2") or Lease("shard-2", None, 0))
    assert lease is not None and await a.release(lease)
    freed = await a.get("shard-2")
    assert freed is not None and freed.owner is None and freed.counter == lease.counter + 1
    assert len(await a.list()) >= 1


def test_expiry_is_judged_by_counter_changes_seen_locally():
    tracker = ExpiryTracker(failover_time=10)
    held = Lease("k", "other", 5)
    tracker.observe([held], now=100.0)
    assert not tracker.expired(held, now=109.9)
    assert tracker.expired(held, now=110.0)
    renewed = Lease("k", "other", 6)
    tracker.observe([renewed], now=111.0)  # the owner renewed: alive again
    assert not tracker.expired(renewed, now=120.0)
    assert tracker.expired(Lease("free", None, 3), now=0.0)


async def test_leader_lease_fails_over_after_the_holder_goes_silent(tables):
    a, b = tables
    key = f"leader-{uuid.uuid4().hex[:6]}"
    leader_a, leader_b = LeaderLease(a, key, 10.0), LeaderLease(b, key, 10.0)
    assert await leader_a.step(now=0.0)
    assert not await leader_b.step(now=0.0)
    assert await leader_a.step(now=3.0)  # renews
    assert not await leader_b.step(now=4.0)
    # a stops renewing (crashed); b needs to see the counter unchanged for failover_time
    assert not await leader_b.step(now=12.0)
    assert await leader_b.step(now=14.5)
    assert not await leader_a.step(now=15.0)  # a notices it lost leadership
    await leader_b.release()
    assert await leader_a.step(now=16.0)  # a free lease is taken at once
