"""Reloads that pass validation but cannot be applied, on real `awsd` processes: the daemon keeps
running, says what went wrong, answers systemd with READY=1, and the next SIGHUP still works."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.core.local_aws import free_port
from tests.conftest import ConfigFactory
from tests.support.proc import REPO, Awsd, NotifySocket

pytestmark = pytest.mark.slow

Start = Callable[..., Awsd]


def idle_worker(tag: str) -> dict[str, Any]:
    return {"entrypoint": "tests.support.workers:idle", "options": {"tag": tag}}


def broken_moto(tmp_path: Path) -> str:
    """A PYTHONPATH on which `moto` is found but cannot be imported: the local endpoint's child
    process exits at once, as with a broken install."""
    package = tmp_path / "broken" / "moto"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ImportError("moto is broken here")\n')
    return f"{package.parent}:{REPO}"


def test_a_reload_that_cannot_start_the_local_endpoint_keeps_the_old_config(
    offline_configs: ConfigFactory, awsd: Start, notify_socket: NotifySocket, tmp_path: Path
):
    data = offline_configs.data({"custom": {"a": idle_worker("a")}})
    path = offline_configs.tmp_path / "awsd.toml"
    offline_configs.rewrite(path, data)
    proc = awsd(
        path, env={"NOTIFY_SOCKET": notify_socket.address, "PYTHONPATH": broken_moto(tmp_path)}
    )
    version = proc.wait_ready()["config_version"]
    ready, _ = notify_socket.wait_for("READY=1")

    data["aws"]["local"] = True  # the local endpoint cannot start: the reload fails
    data["custom"]["a"]["options"]["tag"] = "a2"
    offline_configs.rewrite(path, data)
    proc.signal(signal.SIGHUP)
    failed = proc.logs.wait_for("reload failed; the running config stays")
    assert failed["level"] == "error" and failed["running_config_version"] == version
    assert "local moto server exited" in failed["errors"][0]
    assert "exception" not in failed  # an expected failure: no traceback
    reloading, _ = notify_socket.wait_for("RELOADING=1", after=ready + 1)
    done, msg = notify_socket.wait_for("READY=1", after=reloading + 1)
    assert "last reload failed (1 errors)" in msg
    status = proc.http("/status")[1]
    assert status["state"] == "running" and status["config_version"] == version
    assert status["reloads"]["failed"] == 1 and status["reloads"]["last_errors"]
    assert proc.logs.matching("test worker started", tag="a")
    assert not proc.logs.matching("test worker started", tag="a2")  # nothing was touched
    assert 'awsd_reloads_total{result="failed"} 1' in proc.http("/metrics")[1]

    # The reload loop lives on: a following SIGHUP with a valid change is applied.
    data["aws"]["local"] = False
    offline_configs.rewrite(path, data)
    proc.signal(signal.SIGHUP)
    assert proc.logs.wait_for("reloaded")["changed"] == ["custom:a"]
    proc.logs.wait_for("test worker started", tag="a2")
    notify_socket.wait_for("READY=1", after=notify_socket.wait_for("RELOADING=1", after=done)[0])
    assert proc.http("/status")[1]["reloads"]["ok"] == 1
    assert proc.stop() == 0
    assert "Traceback" not in proc.stderr.text()


def test_a_reload_to_a_taken_health_port_keeps_the_old_health_server(
    offline_configs: ConfigFactory, awsd: Start
):
    data = offline_configs.data({"custom": {"a": idle_worker("a")}})
    old_port = data["health"]["port"]
    path = offline_configs.tmp_path / "awsd.toml"
    offline_configs.rewrite(path, data)
    proc = awsd(path)
    proc.wait_ready()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data["health"]["port"] = port
        data["custom"]["a"]["options"]["tag"] = "a2"
        offline_configs.rewrite(path, data)
        proc.signal(signal.SIGHUP)
        warning = proc.logs.wait_for("health server cannot move; it stays where it was")
        assert warning["level"] == "warning" and warning["port"] == port
        assert warning["reason"] and warning["listening"] == f"127.0.0.1:{old_port}"
        reloaded = proc.logs.wait_for("reloaded")  # the rest of the reload is applied
        assert reloaded["changed"] == ["custom:a"]
        status = proc.http("/status")[1]  # still on the old port
        assert status["config_version"] == reloaded["config_version"]
        assert status["health"]["listening"] == f"127.0.0.1:{old_port}"

        # The next reload with a valid change is applied; the port is still taken.
        data["custom"]["b"] = idle_worker("b")
        offline_configs.rewrite(path, data)
        proc.signal(signal.SIGHUP)
        assert proc.logs.wait_for("reloaded", count=2)["added"] == ["custom:b"]
        assert len(proc.logs.matching("health server cannot move; it stays where it was")) == 2

    # Once the port is free, a reload moves the server there.
    proc.signal(signal.SIGHUP)
    proc.logs.wait_for("reloaded", count=3)
    proc.logs.wait_for("health server listening", port=port)
    proc.health_port = port
    assert proc.http("/status")[1]["health"]["listening"] == f"127.0.0.1:{port}"
    proc.health_port = old_port
    try:
        proc.http("/healthz", timeout=2)
    except OSError:
        pass  # the old server is gone
    else:
        raise AssertionError(f"the old health server still answers on {old_port}")
    assert proc.stop() == 0


def test_turning_the_health_server_off_and_on_again(offline_configs: ConfigFactory, awsd: Start):
    data = offline_configs.data()
    path = offline_configs.tmp_path / "awsd.toml"
    offline_configs.rewrite(path, data)
    proc = awsd(path)
    proc.wait_ready()
    data["health"]["port"] = 0
    offline_configs.rewrite(path, data)
    proc.signal(signal.SIGHUP)
    proc.logs.wait_for("health server stopped (health.port = 0)")
    data["health"]["port"] = port = free_port()
    offline_configs.rewrite(path, data)
    proc.signal(signal.SIGHUP)
    proc.logs.wait_for("health server listening", port=port)
    proc.health_port = port
    assert proc.http("/healthz")[0] == 200
    assert proc.stop() == 0
