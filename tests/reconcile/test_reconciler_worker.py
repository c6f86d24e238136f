"""The reconciler worker: detect and enforce modes, events, metrics, flapping, the real daemon."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from daemon.core.events import ResourceContested, ResourceDrifted
from daemon.core.leadership import SingleDaemon
from daemon.core.local_aws import free_port
from daemon.reconcile import passes as reconciler_module
from daemon.reconcile.passes import Reconciler
from daemon.resources.kind import OWNER_TAG
from tests.support.observe import metric
from tests.support.proc import awsd_cli
from tests.support.proxy import FaultProxy
from tests.support.resources import (
    demo_resources,
    inject_the_four_drifts,
    load,
    plan_and_apply,
    services_for,
    session,
    unique_env,
    write_config,
)

QUEUE = {"queues": {"jobs": {"visibility_timeout": 60}}}


def set_visibility(boto: Any, env: str, seconds: int) -> None:
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName=f"{env}-jobs")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})


def visibility(boto: Any, env: str) -> int:
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName=f"{env}-jobs")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    return int(attrs["Attributes"]["VisibilityTimeout"])


def drained(sub: Any) -> list[Any]:
    events = []
    while not sub.queue.empty():
        events.append(sub.queue.get_nowait())
    return events


class TestDetect:
    async def test_drift_is_logged_counted_and_published_once_and_nothing_changes(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(configs, env, {"mode": "detect", **QUEUE})
        async with session(config) as ctx:
            await plan_and_apply(ctx)
        set_visibility(boto, env, 30)
        async with services_for(config) as services:
            events = services.events.subscribe(ResourceDrifted, name="test")
            reconciler = Reconciler(config, services)
            first = await reconciler.run_pass()
            second = await reconciler.run_pass()
        assert first.drifted == second.drifted == ("queue.jobs",)
        assert first.fixed == second.fixed == ()
        (event,) = drained(events)  # the same drift is announced once, not every pass
        assert (event.resource, event.action, event.fixed) == ("queue.jobs", "update", False)
        assert event.changes == (("visibility_timeout", "60", "30"),)
        assert "drift on queue.jobs (update, not fixed): visibility_timeout: 30 -> 60" in (
            event.text()
        )
        assert metric(services.metrics, "awsd_reconciler_drift_total", kind="queues") == 2
        assert metric(services.metrics, "awsd_reconciler_resources", state="drifted") == 1
        assert visibility(boto, env) == 30

    async def test_a_missing_resource_is_drift_in_detect_mode(self, configs: Any):
        config = load(configs, unique_env(), {"mode": "detect", **QUEUE})
        async with services_for(config) as services:
            result = await Reconciler(config, services).run_pass()
        assert result.drifted == ("queue.jobs",) and result.applied == ()


class TestEnforce:
    async def test_first_pass_creates_and_later_drift_is_fixed_and_published(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(configs, env, {"mode": "enforce", **QUEUE})
        async with services_for(config) as services:
            events = services.events.subscribe(ResourceDrifted, name="test")
            reconciler = Reconciler(config, services)
            first = await reconciler.run_pass()
            assert (first.applied, first.drifted) == (("queue.jobs",), ())
            set_visibility(boto, env, 30)
            second = await reconciler.run_pass()
        assert second.drifted == second.fixed == ("queue.jobs",)
        assert visibility(boto, env) == 60
        (event,) = drained(events)
        assert event.fixed
        assert (
            metric(services.metrics, "awsd_reconciler_fixes_total", kind="queues", result="done")
            == 2
        )

    async def test_the_four_drifts_of_the_issue_are_all_fixed(self, configs: Any, boto: Any):
        env = unique_env()
        config = load(configs, env, demo_resources())
        async with services_for(config) as services:
            reconciler = Reconciler(config, services, leadership=SingleDaemon())
            first = await reconciler.run_pass()
            assert first.ok and len(first.applied) == 9, first
            inject_the_four_drifts(boto, env)
            second = await reconciler.run_pass()
            third = await reconciler.run_pass()
        four = ("alarm.probe-down", "bucket.archive", "queue.readings", "topic.readings")
        assert tuple(sorted(second.drifted)) == tuple(sorted(second.fixed)) == four
        assert second.ok and second.pending == () and second.applied == ()
        assert third.drifted == third.fixed == ()

    async def test_a_resource_another_tool_creates_meanwhile_is_blocked_not_taken(
        self, configs: Any, boto: Any, monkeypatch: Any
    ):
        env = unique_env()
        config = load(configs, env, {"mode": "enforce", **QUEUE})
        make_plan = reconciler_module.make_plan

        async def plan_then_terraform_creates_the_queue(ctx: Any) -> Any:
            plan = await make_plan(ctx)
            boto("sqs").create_queue(
                QueueName=f"{env}-jobs",
                Attributes={"VisibilityTimeout": "5"},
                tags={OWNER_TAG: "terraform"},
            )
            return plan

        monkeypatch.setattr(reconciler_module, "make_plan", plan_then_terraform_creates_the_queue)
        async with services_for(config) as services:
            result = await Reconciler(config, services).run_pass()
        assert (result.blocked, result.applied, result.failed) == (("queue.jobs",), (), ())
        blocked = metric(
            services.metrics, "awsd_reconciler_fixes_total", kind="queues", result="blocked"
        )
        assert blocked == 1
        assert metric(services.metrics, "awsd_reconciler_resources", state="blocked") == 1
        assert visibility(boto, env) == 5

    async def test_a_resource_another_tool_keeps_changing_is_contested_and_left_alone(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(configs, env, {"mode": "enforce", "flap_threshold": 2, **QUEUE})
        async with services_for(config) as services:
            contested = services.events.subscribe(ResourceContested, name="test")
            reconciler = Reconciler(config, services)
            await reconciler.run_pass()
            for _ in range(2):
                set_visibility(boto, env, 30)  # the other tool
                assert (await reconciler.run_pass()).fixed == ("queue.jobs",)
            (event,) = drained(contested)
            assert (event.resource, event.fixes, event.paths) == (
                "queue.jobs",
                2,
                ("visibility_timeout",),
            )
            set_visibility(boto, env, 30)
            third = await reconciler.run_pass()
            assert third.contested == ("queue.jobs",) and third.fixed == ()
            assert visibility(boto, env) == 30  # no longer fought over
            assert "contested" in event.text()
            set_visibility(boto, env, 60)  # someone settles it the config's way
            assert (await reconciler.run_pass()).contested == ()

    async def test_a_pass_that_cannot_reach_aws_fails_cleanly(self, configs: Any):
        dead = f"http://127.0.0.1:{free_port()}"
        config = load(
            configs,
            unique_env(),
            {"mode": "enforce", **QUEUE},
            aws={"endpoint_url": dead, "max_attempts": 1, "connect_timeout": 0.5},
        )
        async with services_for(config) as services:
            result = await Reconciler(config, services).run_pass()
        assert not result.ok and "Could not connect" in (result.error or "")
        assert metric(services.metrics, "awsd_reconciler_passes_total", result="failed") == 1


LEASED = {
    "mode": "enforce",
    "lease_table": "leases",
    "lease_failover": 1.0,
    "tables": {"leases": {"partition_key": "lease_key"}},
    **QUEUE,
}


class TestLeadership:
    async def test_only_the_lease_holder_reconciles_and_a_release_hands_over(
        self, configs: Any, boto: Any
    ):
        env = unique_env()
        config = load(configs, env, LEASED)
        async with services_for(config) as one, services_for(config) as two:
            first, second = Reconciler(config, one), Reconciler(config, two)
            led = await first.run_pass()
            assert led.leader and "queue.jobs" in led.applied
            assert not (await second.run_pass()).leader
            set_visibility(boto, env, 30)
            assert not (await second.run_pass()).leader
            assert visibility(boto, env) == 30
            await first.close()  # a graceful stop gives the lease up
            taken = await second.run_pass()
            await second.close()
        # ("applied", not "fixed": this daemon had not seen the queue in sync before)
        assert taken.leader and taken.applied == ("queue.jobs",)
        assert visibility(boto, env) == 60
        table = boto("dynamodb").describe_table(TableName=f"{env}-leases")["Table"]
        assert table["KeySchema"] == [{"AttributeName": "lease_key", "KeyType": "HASH"}]

    async def test_a_holder_that_stops_renewing_loses_the_lease_after_failover(
        self, configs: Any, fault_proxy: FaultProxy
    ):
        env = unique_env()
        config = load(configs, env, LEASED)
        cut_off = load(
            configs,
            env,
            LEASED,
            aws={"endpoint_url": fault_proxy.url, "max_attempts": 1, "connect_timeout": 0.5},
        )
        async with services_for(cut_off) as one, services_for(config) as two:
            first, second = Reconciler(cut_off, one), Reconciler(config, two)
            assert (await first.run_pass()).leader
            fault_proxy.set_mode("refuse")  # the holder loses its network: it can no longer renew
            assert not (await second.run_pass()).leader
            loop = asyncio.get_running_loop()
            give_up = loop.time() + 30
            while not (await second.run_pass()).leader:
                assert loop.time() < give_up, "the lease was never taken over"
                await asyncio.sleep(0.2)
            assert not (await first.run_pass()).leader
            await first.close()
            await second.close()


@pytest.mark.slow
class TestDaemon:
    def test_resources_exist_before_other_workers_start_and_plan_then_shows_no_changes(
        self, configs: Any, awsd: Any, boto: Any
    ):
        env = unique_env()
        path = write_config(
            configs,
            env,
            {**LEASED, "interval": 3600, "topics": {"news": {}}},
            custom={"poller": {"entrypoint": "tests.support.workers:idle"}},
        )
        daemon = awsd(path)
        daemon.wait_ready(timeout=60)
        daemon.logs.wait_for("test worker started", timeout=30)
        events = [e.get("event") for e in daemon.logs.events]
        # READY=1 does not wait for AWS; the other workers hold their first run until the
        # startup pass is over, so they find what it created.
        assert events.index("create applied") < events.index("test worker started")
        assert events.index("reconcile pass") < events.index("test worker started")

        plan = awsd_cli("plan", "--config", str(path))
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert "No changes. 3 resources match the configuration." in plan.stdout

        _, status = daemon.http("/status")
        reconciler = status["workers"]["reconciler"]
        assert (reconciler["last_pass"]["checked"], reconciler["leader"]) == (3, True)

        set_visibility(boto, env, 30)
        daemon.signal(signal.SIGHUP)
        daemon.logs.wait_for("reconciling after a config reload", timeout=30)
        daemon.logs.wait_for("drift detected", resource="queue.jobs", timeout=30)
        daemon.logs.wait_for("update applied", resource="queue.jobs", timeout=30)
        assert visibility(boto, env) == 60
        assert daemon.stop() == 0

    def test_ready_does_not_wait_for_aws_and_workers_wait_for_the_startup_pass(
        self, configs: Any, awsd: Any, moto_endpoint: str
    ):
        """A Pi booting offline: AWS does not answer, yet READY=1 comes at once; the other
        workers hold their first run for the startup pass, and SIGTERM ends it all cleanly."""
        host, port = moto_endpoint.removeprefix("http://").split(":")
        proxy = FaultProxy(host, int(port)).start()
        try:
            proxy.set_mode("blackhole")
            configs.moto_endpoint = proxy.url
            path = write_config(
                configs,
                unique_env(),
                {"mode": "enforce", "startup_timeout": 120, **QUEUE},
                aws={"read_timeout": 60.0, "connect_timeout": 60.0},
                custom={"poller": {"entrypoint": "tests.support.workers:idle"}},
            )
            daemon = awsd(path)
            daemon.wait_ready(timeout=60)
            _, status = daemon.http("/status")
            assert status["startup"] == "startup reconcile"
            assert status["workers"]["custom:poller"]["waiting_for"] == "startup reconcile"
            assert daemon.http("/readyz")[0] == 200
            assert not daemon.logs.matching("test worker started")
            assert daemon.stop() == 0
            assert not daemon.logs.matching("test worker started")
        finally:
            proxy.stop()

    def test_plan_in_local_mode_sees_the_running_daemons_local_account(
        self, offline_configs: Any, awsd: Any
    ):
        """`make run` then `awsd plan --env local`: the same moto server, "No changes"."""
        path = offline_configs.write(
            {
                "env": unique_env(),
                "aws": {"local": True, "local_port": free_port(), "region": "us-east-1"},
                "resources": {"mode": "enforce", "interval": 3600, **QUEUE},
            }
        )
        daemon = awsd(path)
        daemon.wait_ready(timeout=60)
        plan = awsd_cli("plan", "--config", str(path))
        assert (plan.returncode, plan.stdout.splitlines()[-1]) == (
            0,
            "No changes. 1 resource matches the configuration.",
        ), plan.stderr
        assert "no local AWS endpoint answered" not in plan.stderr
        assert daemon.stop() == 0
