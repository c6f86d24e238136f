"""`awsd cloudwatch metrics|logs` reads back what awsd sent, with the daemon's own config: the
namespace, the log group and stream, the endpoint. Against a real moto server."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import ConfigFactory
from tests.support.proc import awsd_cli

pytestmark = pytest.mark.slow


def test_metrics_lists_the_namespace_with_statistics(configs: ConfigFactory, boto: Any):
    namespace = f"awsd-{uuid.uuid4().hex[:8]}"
    cloudwatch = boto("cloudwatch")
    now = datetime.now(UTC)
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": "awsd_sqs_messages_total",
                "Dimensions": [{"Name": "queue", "Value": "orders"}],
                "Timestamp": now,
                "StatisticValues": {"SampleCount": 4, "Sum": 10, "Minimum": 1, "Maximum": 4},
            },
            {"MetricName": "awsd_process_open_fds", "Timestamp": now, "Value": 12},
        ],
    )
    path = configs.write({"metrics": {"namespace": namespace}})

    done = awsd_cli("cloudwatch", "metrics", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert f"# namespace {namespace}: 2 metrics" in done.stdout
    [row] = [line for line in done.stdout.splitlines() if line.startswith("awsd_sqs_")]
    assert row.split()[1:5] == ["4", "10", "1", "4"] and "queue=orders" in row

    done = awsd_cli("cloudwatch", "metrics", "--config", str(path), "--name", "awsd_process_*")
    assert "1 metrics" in done.stdout and "awsd_sqs_" not in done.stdout


def test_logs_prints_the_latest_events_of_the_daemons_stream(configs: ConfigFactory, boto: Any):
    group = f"/awsd/{uuid.uuid4().hex[:8]}"
    logs = boto("logs")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="test-edge")
    stamp = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="test-edge",
        logEvents=[{"timestamp": stamp + i, "message": f'{{"event": "e{i}"}}'} for i in range(5)],
    )
    path = configs.write({"log": {"cloudwatch": {"log_group": group, "log_stream": "{env}-edge"}}})
    done = awsd_cli("cloudwatch", "logs", "--config", str(path), "--limit", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"# {group} / test-edge: the latest 3 events"
    assert lines[1:] == ['{"event": "e2"}', '{"event": "e3"}', '{"event": "e4"}']


def test_local_mode_without_a_running_daemon_says_what_to_do(configs: ConfigFactory):
    from daemon.core.local_aws import free_port

    data = configs.data({"aws": {"local": True, "local_port": free_port()}})
    del data["aws"]["endpoint_url"]
    path = configs.tmp_path / "local.toml"
    configs.rewrite(path, data)
    done = awsd_cli("cloudwatch", "metrics", "--config", str(path))
    assert done.returncode == 1
    assert "no local AWS endpoint answers" in done.stderr and "make run" in done.stderr
    assert "Traceback" not in done.stderr
