"""Metrics and logs of a real `awsd` process: /metrics, EMF lines, what lands in CloudWatch and
CloudWatch Logs (the last lines and counts of a shutdown included, secrets never), and a shutdown
with the endpoint gone."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from daemon.core.identity import hostname
from tests.conftest import ConfigFactory
from tests.support.proc import Awsd, prometheus, sample
from tests.support.proxy import FaultProxy
from tests.support.workers import LEAKED_SECRETS
from tests.telemetry.test_metrics import check_emf

pytestmark = pytest.mark.slow

Start = Callable[..., Awsd]


def ticking(tag: str, **options: Any) -> dict[str, Any]:
    return {"entrypoint": "tests.support.workers:ticking", "options": {"tag": tag, **options}}


def log_messages(boto: Callable[[str], Any], group: str) -> list[dict[str, Any]]:
    logs = boto("logs")
    events, token = [], None
    while True:
        page = logs.filter_log_events(logGroupName=group, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return [json.loads(e["message"]) for e in events]


def test_metrics_endpoint_shows_the_daemons_health_and_follows_reloads(
    configs: ConfigFactory, awsd: Start
):
    data = configs.data({"custom": {"a": ticking("a")}})
    path = configs.tmp_path / "awsd.toml"
    configs.rewrite(path, data)
    proc = awsd(path)
    proc.wait_ready()
    families = prometheus(proc)
    workers = proc.http("/status")[1]["workers"]
    assert "custom:a" in workers
    assert sample(families, "awsd_workers", "awsd_workers", state="running") == len(workers)
    assert sample(families, "awsd_reloads", "awsd_reloads_total", result="ok") == 0
    assert (
        sample(families, "awsd_process_resident_memory_bytes", "awsd_process_resident_memory_bytes")
        > 0
    )
    assert "awsd_info" in families and "awsd_test_tick_seconds" in families
    proc.signal(signal.SIGHUP)
    proc.logs.wait_for("reloaded")
    families = prometheus(proc)
    assert sample(families, "awsd_reloads", "awsd_reloads_total", result="ok") == 1
    data["metrics"] = {"prometheus": {"enabled": False}}
    configs.rewrite(path, data)
    proc.signal(signal.SIGHUP)
    proc.logs.wait_for("reloaded", count=2)
    assert proc.http("/metrics")[0] == 404
    assert proc.stop() == 0


def test_emf_lines_reach_stdout_at_any_log_level_and_follow_the_structure(
    configs: ConfigFactory, awsd: Start
):
    path = configs.write(
        {
            "log": {"level": "warning"},
            "metrics": {"emf": {"enabled": True}, "flush_interval": 0.3, "histograms": "values"},
            "custom": {"a": ticking("a")},
        }
    )
    proc = awsd(path)
    line = proc.logs.wait_for("metrics", where=lambda e: e.get("awsd_test_ticks_total", 0) > 0)
    assert not proc.logs.matching("ready")  # info lines are filtered, EMF lines are not
    assert proc.stop() == 0
    docs = proc.logs.matching("metrics")
    for doc in docs:
        check_emf(doc)
    assert line["worker"] == "custom:a" and line["environment"] == "test"
    assert line["host"] == hostname()
    tick = next(d["awsd_test_tick_seconds"] for d in docs if "awsd_test_tick_seconds" in d)
    assert tick["Count"] >= 1 and tick["Values"] and tick["Counts"]
    # The last flush runs after the worker stopped: every tick is in some line.
    finished_ticks = sum(d.get("awsd_test_ticks_total", 0) for d in docs)
    assert finished_ticks >= 2 and proc.stderr.text() == ""


def test_logs_and_metrics_reach_cloudwatch_with_the_final_lines_and_no_secret(
    configs: ConfigFactory, awsd: Start, boto: Callable[[str], Any]
):
    group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    path = configs.write(
        {
            "log": {"cloudwatch": {"enabled": True, "log_group": group, "flush_interval": 0.2}},
            "metrics": {
                "namespace": namespace,
                "flush_interval": 0.5,
                "cloudwatch": {"enabled": True},
                "include": ["awsd_test_*", "awsd_workers"],
            },
            "custom": {
                "a": ticking("a", every=0.02),
                "leaky": {"entrypoint": "tests.support.workers:leak_secrets"},
            },
        }
    )
    proc = awsd(path)
    proc.logs.wait_for("secret test")
    proc.logs.wait_for("shipping logs to CloudWatch Logs")
    assert proc.stop() == 0
    finished = proc.logs.wait_for("test worker finished", tag="a")
    shipped = log_messages(boto, group)
    events = [e["event"] for e in shipped]
    for expected in ("starting", "ready", "secret test", "stopping", "test worker finished"):
        assert expected in events, expected
    assert "metrics flushed" in events  # logged after the workers stopped, and still shipped
    streams = boto("logs").describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == [hostname()]  # the default "{hostname}"
    text = json.dumps(shipped)
    for secret in LEAKED_SECRETS:
        assert secret not in text
    leaked = next(e for e in shipped if e["event"] == "secret test")
    assert leaked["aws_secret_access_key"] == "***" and leaked["password"] == "***"
    # Every tick, the one made while stopping included, is in CloudWatch.
    end = datetime.now(UTC) + timedelta(minutes=5)
    points = boto("cloudwatch").get_metric_statistics(
        Namespace=namespace,
        MetricName="awsd_test_ticks_total",
        Dimensions=[
            {"Name": "environment", "Value": "test"},
            {"Name": "host", "Value": hostname()},
            {"Name": "worker", "Value": "custom:a"},
        ],
        StartTime=end - timedelta(hours=1),
        EndTime=end,
        Period=3600,
        Statistics=["Sum"],
    )["Datapoints"]
    assert [p["Sum"] for p in points] == [finished["ticks"]]


def test_shutdown_with_the_endpoint_down_ends_within_the_deadline(
    configs: ConfigFactory, awsd: Start, fault_proxy: FaultProxy
):
    configs.moto_endpoint = fault_proxy.url
    group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
    path = configs.write(
        {
            "runtime": {"shutdown_timeout": 3.0},
            "log": {"cloudwatch": {"enabled": True, "log_group": group, "flush_interval": 0.2}},
            "metrics": {"flush_interval": 0.3, "cloudwatch": {"enabled": True}},
            "custom": {"a": ticking("a")},
        }
    )
    proc = awsd(path)
    proc.logs.wait_for("shipping logs to CloudWatch Logs")
    fault_proxy.set_mode("blackhole")
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    stopped = proc.logs.wait_for("stopped")
    assert stopped["duration_s"] <= 3.0  # the daemon's own promise, not a speed test
    assert proc.logs.matching("log events not shipped before the shutdown deadline")
    assert "did not finish" not in proc.stderr.text()


def test_the_shippers_own_botocore_logs_never_feed_back(
    configs: ConfigFactory, awsd: Start, boto: Callable[[str], Any]
):
    group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
    path = configs.write(
        {
            "log": {
                "level": "debug",
                "library_level": "debug",
                "cloudwatch": {"enabled": True, "log_group": group, "flush_interval": 0.1},
            },
            "custom": {"a": ticking("a", every=0.2)},
        }
    )
    proc = awsd(path)
    proc.logs.wait_for("shipping logs to CloudWatch Logs")
    proc.logs.wait_for("test worker started")
    proc.signal(signal.SIGHUP)  # a reload while shipping keeps the shipper and its buffer
    proc.logs.wait_for("reloaded")
    assert proc.stop() == 0
    shipped = log_messages(boto, group)
    assert {"starting", "reloaded", "stopping"} <= {e["event"] for e in shipped}

    # botocore logged the shipper's own calls on stdout, and none of those lines was shipped
    # (botocore lines from elsewhere, like creating the session at startup, may be).
    def about_shipping(e: dict[str, Any]) -> bool:
        return "logger" in e and "PutLogEvents" in json.dumps(e)

    assert [e for e in proc.logs.events if about_shipping(e)]
    assert not [e for e in shipped if about_shipping(e)]
