"""The daemon's own health as Prometheus metrics, from a real `awsd` process: worker restarts,
failed reloads, and the outbox's depth while its endpoint is down."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from daemon.core.local_aws import free_port
from tests.conftest import ConfigFactory
from tests.support.proc import Awsd, prometheus, sample

pytestmark = pytest.mark.slow

Start = Callable[..., Awsd]


def test_restarts_failed_reloads_and_outbox_depth_are_metrics(
    offline_configs: ConfigFactory, awsd: Start
):
    data: dict[str, Any] = offline_configs.data(
        {
            # Nothing listens there: the outbox keeps what it accepted, and says how much.
            "aws": {"endpoint_url": f"http://127.0.0.1:{free_port()}", "max_attempts": 1},
            "outbox": {"retry_initial": 5.0},
            "custom": {
                "bad": {"entrypoint": "tests.support.workers:crash"},
                "producer": {
                    "entrypoint": "tests.support.workers:produce",
                    "options": {"queue": "nowhere", "count": 3},
                },
            },
            "runtime": {"restart_backoff": 0.1, "restart_backoff_max": 0.2, "failed_after": 50},
        }
    )
    path = offline_configs.tmp_path / "awsd.toml"
    offline_configs.rewrite(path, data)
    proc = awsd(path)
    proc.wait_ready()
    proc.logs.wait_for("test producer done")
    proc.logs.wait_for("worker crashed", worker="custom:bad", count=3)

    families = prometheus(proc)
    restarts = sample(
        families, "awsd_worker_restarts", "awsd_worker_restarts_total", worker="custom:bad"
    )
    assert restarts >= 2
    assert sample(families, "awsd_outbox_depth", "awsd_outbox_depth") == 3

    path.write_text("env = 'test'\n[runtime]\nno_such_key = 1\n")
    proc.signal(signal.SIGHUP)
    proc.logs.wait_for("reload rejected; the running config stays")
    families = prometheus(proc)
    assert sample(families, "awsd_reloads", "awsd_reloads_total", result="failed") == 1
    assert sample(families, "awsd_reloads", "awsd_reloads_total", result="ok") == 0
    assert proc.stop() == 0
