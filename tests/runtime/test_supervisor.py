"""The supervisor in-process: diffs on apply, three-stage stop, restart backoff."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from daemon.config.models import AwsConfig, Config, RuntimeConfig
from daemon.config.outbox import OutboxConfig
from daemon.core.aws import AwsClients
from daemon.core.events import EventBus
from daemon.core.metrics import Registry
from daemon.outbox import Outbox
from daemon.runtime.supervisor import State, Supervisor
from daemon.services import Services
from daemon.worker import Worker, WorkerContext, WorkerSpec

RUNTIME = RuntimeConfig(
    state_dir="/tmp", restart_backoff=0.01, restart_backoff_max=0.02, failed_after=2
)


class Probe(Worker):
    runs: dict[str, int] = {}

    def __init__(self, name: str, behaviour: str) -> None:
        self.name = name
        self.behaviour = behaviour

    async def run(self, ctx: WorkerContext) -> None:
        Probe.runs[self.name] = Probe.runs.get(self.name, 0) + 1
        if self.behaviour == "crash":
            raise RuntimeError("boom")
        if self.behaviour == "stubborn":
            while True:
                await asyncio.sleep(0.01)
        while await ctx.sleep(0.01):
            pass


def spec(name: str, behaviour: str = "idle", fp: str = "1") -> WorkerSpec:
    return WorkerSpec(name, "probe", fp, lambda _s: Probe(name, behaviour))


@pytest.fixture
async def services() -> Any:
    metrics = Registry()
    events = EventBus(metrics)
    outbox = Outbox(OutboxConfig(path=":memory:"), ":memory:", metrics=metrics, events=events)
    svc = Services(
        Config(env="test"),
        metrics=metrics,
        events=events,
        outbox=outbox,
        clients=AwsClients(AwsConfig(region="us-east-1")),
    )
    yield svc
    await svc.close()
    await outbox.close()


def deadline(seconds: float = 1.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_apply_touches_only_what_changed(services: Services):
    Probe.runs.clear()
    sup = Supervisor(Registry())
    await sup.apply([spec("a"), spec("b"), spec("c")], services, RUNTIME, deadline())
    assert sup.not_ready() == []
    first_a = sup.runners["a"]
    changes = await sup.apply(
        [spec("a"), spec("b", fp="2"), spec("d")], services, RUNTIME, deadline()
    )
    assert (changes.added, changes.removed, changes.changed, changes.unchanged) == (
        ("d",),
        ("c",),
        ("b",),
        ("a",),
    )
    assert sup.runners["a"] is first_a
    assert Probe.runs == {"a": 1, "b": 2, "c": 1, "d": 1}
    await sup.stop_all(deadline())
    assert all(r.state == State.STOPPED for r in sup.runners.values())


async def test_crashing_worker_becomes_failed_but_keeps_being_retried(services: Services):
    Probe.runs.clear()
    sup = Supervisor(Registry())
    await sup.apply([spec("bad", "crash"), spec("good")], services, RUNTIME, deadline())
    for _ in range(200):
        if Probe.runs.get("bad", 0) >= 4:
            break
        await asyncio.sleep(0.01)
    assert Probe.runs["bad"] >= 4
    assert sup.runners["bad"].state in (State.FAILED, State.RUNNING)
    assert sup.runners["bad"].crashes_in_row >= 2
    assert sup.runners["good"].state == State.RUNNING and Probe.runs["good"] == 1
    health = sup.health()
    assert health["bad"]["last_error"] == "RuntimeError: boom"
    await sup.stop_all(deadline())


async def test_stubborn_worker_is_cancelled_after_the_deadline(services: Services):
    sup = Supervisor(Registry())
    await sup.apply([spec("s", "stubborn")], services, RUNTIME, deadline())
    loop = asyncio.get_running_loop()
    began = loop.time()
    await sup.stop_all(deadline(0.2))
    assert 0.15 < loop.time() - began < 5.0  # waited for the deadline, then cancelled
    assert sup.runners["s"].task is not None and sup.runners["s"].task.cancelled()


async def test_workers_hold_their_first_run_while_the_gate_is_closed(services: Services):
    """The daemon closes the gate around its startup preparation (the reconciler's first pass):
    workers count as running (READY=1 need not wait for AWS) but begin only once it opens."""
    Probe.runs.clear()
    sup = Supervisor(Registry())
    sup.gate.close("startup reconcile")
    await sup.apply([spec("a"), spec("b")], services, RUNTIME, deadline())
    assert sup.not_ready() == []
    await asyncio.sleep(0.05)
    assert Probe.runs == {}
    health = sup.health()
    assert health["a"]["waiting_for"] == "startup reconcile"
    assert sup.stuck() == []
    sup.gate.open()
    for _ in range(100):
        if Probe.runs == {"a": 1, "b": 1}:
            break
        await asyncio.sleep(0.01)
    assert Probe.runs == {"a": 1, "b": 1}
    assert "waiting_for" not in sup.health()["a"]
    await sup.stop_all(deadline())


async def test_a_worker_waiting_at_the_gate_stops_at_once(services: Services):
    Probe.runs.clear()
    sup = Supervisor(Registry())
    sup.gate.close("startup reconcile")
    await sup.apply([spec("a")], services, RUNTIME, deadline())
    await sup.stop_all(deadline(30))
    assert sup.runners["a"].state == State.STOPPED and Probe.runs == {}
