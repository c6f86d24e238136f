"""Reconciler: how long a drift check of declared resources takes, and what it costs in calls.

Baseline: what a hand-written check script does (one boto3 call after the other, a resource at
a time). Both read the same 40 resources (queues, topics, log groups, alarms) through the same
loopback path to a moto server, with 20 ms of added latency each way (`bench/latency.py`, a
40 ms round trip) standing in for the round trip to an AWS region.

Figures: seconds per pass (median of 3), API calls per pass, and the ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import boto3

from bench.latency import Proxy
from daemon.config.models import Config
from daemon.core.aws import AwsClients
from daemon.core.local_aws import LocalAws
from daemon.core.metrics import Registry
from daemon.reconcile.apply import Applier
from daemon.reconcile.context import Context
from daemon.reconcile.plan import make_plan
from daemon.workers import CATALOG

LATENCY = 0.02
PASSES = 3
EACH = 10


def _config(endpoint: str) -> Config:
    resources: dict[str, Any] = {
        "mode": "enforce",
        "converge_timeout": 5.0,
        "queues": {f"q{i}": {"visibility_timeout": 60} for i in range(EACH)},
        "topics": {f"t{i}": {"display_name": "bench"} for i in range(EACH)},
        "log_groups": {f"g{i}": {"retention_days": 14} for i in range(EACH)},
        "alarms": {f"a{i}": {"metric": "m", "threshold": 1} for i in range(EACH)},
    }
    return Config.model_validate(
        {
            "env": "bench",
            "aws": {"region": "us-east-1", "endpoint_url": endpoint},
            "resources": resources,
        }
    )


async def _awsd_passes(config: Config) -> tuple[list[float], float]:
    metrics = Registry()
    # local_endpoint: moto's dummy credentials (the endpoint itself is the proxy's)
    clients = AwsClients(config.aws, local_endpoint=config.aws.endpoint_url, metrics=metrics)
    try:
        ctx = Context(config, clients, used=CATALOG.worker_references(config))
        await ctx.start()
        await Applier(ctx).apply(await make_plan(ctx))
        calls = metrics.counter("awsd_aws_api_calls_total", "", ("service", "operation"))
        before = sum(child.value for _, child in calls.series())
        times = []
        for _ in range(PASSES):
            began = time.perf_counter()
            plan = await make_plan(ctx)
            times.append(time.perf_counter() - began)
            assert not plan.changes, plan.summary()
        after = sum(child.value for _, child in calls.series())
        return times, (after - before) / PASSES
    finally:
        await clients.close()


def _script_pass(endpoint: str) -> tuple[float, int]:
    """The baseline: read what the config declares, one call at a time."""
    kw = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sqs, sns, logs, cw = (boto3.client(s, **kw) for s in ("sqs", "sns", "logs", "cloudwatch"))
    calls = 0
    began = time.perf_counter()
    for i in range(EACH):
        url = sqs.get_queue_url(QueueName=f"bench-q{i}")["QueueUrl"]
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        sqs.list_queue_tags(QueueUrl=url)
        arn = f"arn:aws:sns:us-east-1:123456789012:bench-t{i}"
        sns.get_topic_attributes(TopicArn=arn)
        sns.list_tags_for_resource(ResourceArn=arn)
        sns.list_subscriptions_by_topic(TopicArn=arn)
        logs.describe_log_groups(logGroupNamePrefix=f"bench-g{i}")
        logs.list_tags_for_resource(
            resourceArn=f"arn:aws:logs:us-east-1:123456789012:log-group:bench-g{i}"
        )
        cw.describe_alarms(AlarmNames=[f"bench-a{i}"])
        cw.list_tags_for_resource(
            ResourceARN=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:bench-a{i}"
        )
        calls += 10
    return time.perf_counter() - began, calls


async def _run() -> None:
    local = LocalAws()
    endpoint = await local.start()
    proxy = Proxy(endpoint, 2 * LATENCY * 1000)
    try:
        config = _config(proxy.url)
        awsd_times, awsd_calls = await _awsd_passes(config)
        script = [await asyncio.to_thread(_script_pass, proxy.url) for _ in range(PASSES)]
    finally:
        proxy.stop()
        await local.stop()
    script_times = [t for t, _ in script]
    awsd_s, script_s = statistics.median(awsd_times), statistics.median(script_times)
    resources = 4 * EACH
    print(f"drift check of {resources} resources, {LATENCY * 1000:.0f} ms added latency each way")
    print(f"  sequential boto3 script: {script_s:6.2f} s/pass  {script[0][1]:4d} calls/pass")
    print(f"  awsd plan (concurrent):  {awsd_s:6.2f} s/pass  {awsd_calls:4.0f} calls/pass")
    print(f"  ratio: awsd is {script_s / awsd_s:.1f}x faster per pass")


def _startup_seconds(reconcile_at_start: bool) -> tuple[float, float]:
    """`awsd run` on configs/local.toml (embedded moto, 9 resources to create): seconds to
    READY, and the seconds the startup pass took (the other workers wait for it; READY not)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS", "NOTIFY_"))}
    env.update(
        AWSD__AWS__LOCAL_PORT="0",
        AWSD__HEALTH__PORT="0",
        AWSD__LOG__FORMAT="json",
        AWSD__RESOURCES__RECONCILE_AT_START=str(reconcile_at_start).lower(),
        AWSD_STATE_DIR=tempfile.mkdtemp(prefix="awsd-bench-"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", "configs/local.toml"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    ready = pass_s = 0.0
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "reconcile pass" and not pass_s:
            pass_s = float(event["seconds"])
        if event.get("event") == "ready":
            ready = float(event["startup_s"])
        if ready and (pass_s or not reconcile_at_start):
            break  # READY does not wait for the startup pass: the workers do
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return ready, pass_s if reconcile_at_start else 0.0


def main() -> None:
    asyncio.run(_run())
    print("startup of `make run` (embedded moto, 9 resources created before the workers work):")
    for enabled in (False, True):
        runs = [_startup_seconds(enabled) for _ in range(2)]
        ready = statistics.median(r for r, _ in runs)
        label = "with the startup pass   " if enabled else "without (reconcile later)"
        extra = f"  (pass {statistics.median(p for _, p in runs):.2f} s)" if enabled else ""
        print(f"  {label}: READY after {ready:.2f} s{extra}")
