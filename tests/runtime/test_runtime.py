"""The runtime on real `awsd` processes: READY, reloads, signals, crashes, watchdog, redaction."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ConfigFactory
from tests.support.proc import Awsd, NotifySocket, awsd_cli
from tests.support.workers import LEAKED_SECRETS

pytestmark = pytest.mark.slow

Start = Callable[..., Awsd]


def idle_worker(tag: str, **options: Any) -> dict[str, Any]:
    return {"entrypoint": "tests.support.workers:idle", "options": {"tag": tag, **options}}


def started(proc: Awsd, tag: str) -> int:
    return len(proc.logs.matching("test worker started", tag=tag))


def test_ready_status_and_mainpid_reach_the_notify_socket(
    offline_configs: ConfigFactory, awsd: Start, notify_socket: NotifySocket
):
    path = offline_configs.write({"custom": {"a": idle_worker("a")}})
    proc = awsd(path, env={"NOTIFY_SOCKET": notify_socket.address})
    _, msg = notify_socket.wait_for("READY=1")
    assert f"MAINPID={proc.pid}" in msg
    assert "STATUS=2/2 workers running, 0 failed; config " in msg  # custom:a and the outbox
    version = proc.wait_ready()["config_version"]
    assert version in msg
    status, body = proc.http("/readyz")
    assert (status, body) == (200, {"status": "ready"})
    status, body = proc.http("/status")
    assert status == 200 and body["config_version"] == version
    assert body["workers"]["custom:a"]["state"] == "running"
    assert proc.http("/healthz")[0] == 200
    assert proc.stop() == 0
    notify_socket.wait_for("STOPPING=1")


def test_abstract_notify_socket_works(offline_configs: ConfigFactory, awsd: Start):
    sock = NotifySocket(abstract=True)
    try:
        proc = awsd(offline_configs.write(health=False), env={"NOTIFY_SOCKET": sock.address})
        sock.wait_for("READY=1")
        assert proc.stop() == 0
    finally:
        sock.close()


def test_sighup_with_a_valid_change_restarts_only_the_changed_worker(
    offline_configs: ConfigFactory, awsd: Start, notify_socket: NotifySocket
):
    data = offline_configs.data(
        {"custom": {"a": idle_worker("a"), "b": idle_worker("b"), "c": idle_worker("c")}}
    )
    path = offline_configs.tmp_path / "awsd.toml"
    offline_configs.rewrite(path, data)
    proc = awsd(path, env={"NOTIFY_SOCKET": notify_socket.address})
    proc.wait_ready()
    ready_index, _ = notify_socket.wait_for("READY=1")
    old_version = proc.http("/status")[1]["config_version"]

    data["custom"]["b"]["options"]["tag"] = "b2"  # changed
    del data["custom"]["c"]  # removed
    data["custom"]["d"] = idle_worker("d")  # added
    offline_configs.rewrite(path, data)
    proc.signal(signal.SIGHUP)
    reloaded = proc.logs.wait_for("reloaded")
    assert reloaded["changed"] == ["custom:b"]
    assert reloaded["added"] == ["custom:d"]
    assert reloaded["removed"] == ["custom:c"]
    assert reloaded["unchanged"] == 2  # custom:a and the outbox worker
    assert reloaded["config_version"] != old_version
    assert started(proc, "a") == 1  # untouched: never restarted
    assert started(proc, "b2") == 1 and started(proc, "d") == 1
    proc.logs.wait_for("test worker finished", tag="b")  # stopped gracefully, not cancelled
    proc.logs.wait_for("test worker finished", tag="c")

    # RELOADING=1 with MONOTONIC_USEC, then READY=1 again (Type=notify-reload compatible)
    reloading_index, msg = notify_socket.wait_for("RELOADING=1", after=ready_index + 1)
    usec = int(
        next(line for line in msg.splitlines() if line.startswith("MONOTONIC_USEC=")).split("=")[1]
    )
    assert abs(usec / 1e6 - time.monotonic()) < 60
    notify_socket.wait_for("READY=1", after=reloading_index + 1)
    assert proc.http("/status")[1]["reloads"]["ok"] == 1
    assert proc.stop() == 0


def test_sighup_with_an_invalid_file_keeps_the_old_config_running(
    offline_configs: ConfigFactory, awsd: Start, notify_socket: NotifySocket
):
    data = offline_configs.data({"custom": {"a": idle_worker("a")}})
    path = offline_configs.tmp_path / "awsd.toml"
    offline_configs.rewrite(path, data)
    proc = awsd(path, env={"NOTIFY_SOCKET": notify_socket.address})
    version = proc.wait_ready()["config_version"]

    path.write_text(path.read_text() + '\n[aws.extra]\nx = 1\n[log]\nlevel = "loud"\n')
    proc.signal(signal.SIGHUP)
    rejected = proc.logs.wait_for("reload rejected; the running config stays")
    assert rejected["level"] == "error"
    assert rejected["running_config_version"] == version
    assert any(f"{path}: " in e and "invalid TOML" in e for e in rejected["errors"])
    notify_socket.wait_for("STATUS=", after=0)
    _, msg = notify_socket.wait_for("READY=1", after=notify_socket.wait_for("RELOADING=1")[0])
    assert "last reload rejected (1 errors)" in msg

    status = proc.http("/status")[1]
    assert status["config_version"] == version
    assert status["reloads"]["failed"] == 1 and status["reloads"]["last_errors"]
    assert status["workers"]["custom:a"]["state"] == "running"
    assert started(proc, "a") == 1

    # A file that parses but fails validation: every error reported, old config still running.
    data["aws"]["max_attempts"] = 0
    data["log"]["level"] = "loud"
    offline_configs.rewrite(path, data)
    proc.signal(signal.SIGHUP)
    rejected = proc.logs.wait_for("reload rejected; the running config stays", count=2)
    assert len(rejected["errors"]) == 2
    assert any("aws.max_attempts" in e for e in rejected["errors"])
    assert proc.http("/status")[1]["config_version"] == version
    assert proc.stop() == 0


def test_sigterm_lets_workers_finish_and_exits_zero_within_the_timeout(
    offline_configs: ConfigFactory, awsd: Start
):
    path = offline_configs.write(
        {
            "custom": {"slow": idle_worker("slow", finish_delay=1.0)},
            "runtime": {"shutdown_timeout": 10.0},
        }
    )
    proc = awsd(path)
    proc.wait_ready()
    began = time.monotonic()
    assert proc.stop(timeout=15) == 0
    took = time.monotonic() - began
    assert took < 10.0
    proc.logs.wait_for("test worker finished", tag="slow")
    assert proc.logs.matching("stopped")


def test_a_worker_ignoring_stop_is_cancelled_at_the_deadline(
    offline_configs: ConfigFactory, awsd: Start
):
    path = offline_configs.write(
        {
            "custom": {"stubborn": {"entrypoint": "tests.support.workers:stubborn"}},
            "runtime": {"shutdown_timeout": 2.0},
        }
    )
    proc = awsd(path)
    proc.wait_ready()
    # Exit code 0 proves it finished in time: past shutdown_timeout + 2 s the hard stop exits 1.
    assert proc.stop(timeout=10) == 0
    proc.logs.wait_for("worker did not stop by the deadline; cancelling", worker="custom:stubborn")


def test_second_sigint_forces_exit(offline_configs: ConfigFactory, awsd: Start):
    path = offline_configs.write(
        {
            "custom": {"stubborn": {"entrypoint": "tests.support.workers:stubborn"}},
            "runtime": {"shutdown_timeout": 30.0},
        }
    )
    proc = awsd(path)
    proc.wait_ready()
    proc.signal(signal.SIGINT)
    proc.logs.wait_for("stopping")
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 130


def test_a_crashing_worker_is_restarted_with_backoff_and_the_others_keep_running(
    offline_configs: ConfigFactory, awsd: Start
):
    path = offline_configs.write(
        {
            "custom": {
                "bad": {"entrypoint": "tests.support.workers:crash"},
                "good": idle_worker("g"),
            },
            "runtime": {"restart_backoff": 0.1, "restart_backoff_max": 0.4, "failed_after": 3},
        }
    )
    proc = awsd(path)
    proc.wait_ready()
    crashes = [
        proc.logs.wait_for("worker crashed", worker="custom:bad", count=n) for n in range(1, 5)
    ]
    assert "RuntimeError: boom from custom:bad" in crashes[0]["exception"]
    assert "Traceback" in crashes[0]["exception"]
    delays = [
        e["delay_s"] for e in proc.logs.matching("worker restart scheduled", worker="custom:bad")
    ][:4]
    assert all(0.05 <= d <= 0.4 for d in delays), delays
    assert delays[2] >= delays[0]  # grows (up to the cap)

    status, body = proc.http("/readyz")
    assert status == 503 and body["workers"] == ["custom:bad"]
    health = proc.http("/status")[1]["workers"]
    assert health["custom:bad"]["state"] in ("failed", "running")
    assert health["custom:bad"]["restarts"] >= 3
    assert "boom" in health["custom:bad"]["last_error"]
    assert health["custom:good"]["state"] == "running"
    assert health["custom:good"]["restarts"] == 0
    assert started(proc, "g") == 1
    assert proc.stop() == 0


def test_secrets_never_reach_the_log(offline_configs: ConfigFactory, awsd: Start):
    path = offline_configs.write(
        {"custom": {"leaky": {"entrypoint": "tests.support.workers:leak_secrets"}}}
    )
    proc = awsd(path)
    event = proc.logs.wait_for("secret test")
    proc.stop()
    text = proc.logs.text() + proc.stderr.text()
    for secret in LEAKED_SECRETS:
        assert secret not in text
    assert event["aws_secret_access_key"] == "***"
    assert event["headers"] == {"Authorization": "***", "Accept": "json"}
    assert "https://bob:***@example.test/x" in event["note"]


def test_watchdog_is_fed_only_while_workers_make_progress(
    offline_configs: ConfigFactory, awsd: Start, notify_socket: NotifySocket
):
    path = offline_configs.write(
        {
            "custom": {
                "quiet": {"entrypoint": "tests.support.workers:silent", "stall_timeout": 1.5},
                "busy": idle_worker("busy"),
            }
        }
    )
    proc = awsd(path, env={"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "400000"})
    proc.wait_ready()
    notify_socket.wait_for("WATCHDOG=1")
    proc.logs.wait_for("workers made no progress; not feeding the systemd watchdog", timeout=10)
    count = len([m for m in notify_socket.messages if m == "WATCHDOG=1"])
    time.sleep(1.0)
    assert len([m for m in notify_socket.messages if m == "WATCHDOG=1"]) == count
    assert proc.stop() == 0


def test_config_file_change_triggers_a_reload_when_watching(
    offline_configs: ConfigFactory, awsd: Start
):
    data = offline_configs.data(
        {
            "custom": {"a": idle_worker("a")},
            "runtime": {"watch_config": True, "watch_debounce": 0.3},
        }
    )
    path = offline_configs.tmp_path / "awsd.toml"
    offline_configs.rewrite(path, data)
    proc = awsd(path)
    proc.wait_ready()
    data["custom"]["a"]["options"]["tag"] = "a2"
    offline_configs.rewrite(path, data)
    assert proc.logs.wait_for("reloaded")["changed"] == ["custom:a"]
    assert proc.logs.matching("reload requested", trigger="file change")
    assert proc.stop() == 0


def test_health_port_in_use_is_a_clear_startup_error(offline_configs: ConfigFactory, awsd: Start):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = offline_configs.write({"health": {"port": port}})
        proc = awsd(path)
        assert proc.wait(timeout=20) == 1
    failed = proc.logs.wait_for("startup failed")
    assert f"cannot listen on 127.0.0.1:{port}" in failed["error"]
    assert "Traceback" not in proc.stderr.text()


def test_local_mode_starts_and_reaps_its_own_moto_server(
    offline_configs: ConfigFactory, awsd: Start
):
    path = offline_configs.write({"aws": {"local": True}})
    proc = awsd(path)
    proc.wait_ready()
    endpoint = proc.logs.wait_for("local AWS endpoint started")
    child = endpoint["pid"]
    assert proc.http("/status")[1]["aws"]["local_endpoint"] == endpoint["endpoint"]
    proc.signal(signal.SIGKILL)  # no chance to clean up: the child must still go
    proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"moto server {child} outlived the SIGKILLed daemon")


def test_local_mode_with_a_fixed_port_reuses_a_running_moto_server(
    offline_configs: ConfigFactory, awsd: Start, moto_endpoint: str
):
    port = int(moto_endpoint.rsplit(":", 1)[1])
    proc = awsd(offline_configs.write({"aws": {"local": True, "local_port": port}}))
    proc.wait_ready()
    proc.logs.wait_for(
        "local AWS: reusing the moto server already on its port", endpoint=moto_endpoint
    )
    assert not proc.logs.matching("local AWS endpoint started")
    assert proc.stop() == 0


def test_local_mode_with_a_fixed_port_held_by_something_else_uses_a_free_port(
    offline_configs: ConfigFactory, awsd: Start
):
    """`make run` pins aws.local_port = 4566: another program on that port must not stop it."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = awsd(offline_configs.write({"aws": {"local": True, "local_port": port}}))
        proc.wait_ready()
        warning = proc.logs.wait_for(
            "local AWS: aws.local_port is taken by something that is not a moto server; "
            "starting one on a free port instead",
            port=port,
        )
        assert warning["level"] == "warning"
        assert "awsd's commands find it" in warning["consequence"]
        endpoint = proc.http("/status")[1]["aws"]["local_endpoint"]
        assert endpoint == warning["endpoint"] and not endpoint.endswith(f":{port}")
        proc.logs.wait_for("local AWS endpoint started", endpoint=endpoint)
        # The commands of this config find the endpoint the daemon uses, not the taken port.
        metrics = awsd_cli("cloudwatch", "metrics", "--config", str(proc.config))
        assert metrics.returncode == 0, metrics.stderr
        assert "no metrics in namespace 'awsd'" in metrics.stdout
        assert proc.stop() == 0


def test_readyz_waits_for_startup_to_finish(offline_configs: ConfigFactory):
    """During startup (the reconciler's first pass, workers starting) no worker is failing yet,
    but the daemon is not ready: /readyz must say so."""
    from daemon.runtime.app import Daemon
    from daemon.workers import CATALOG, load_config

    config = load_config(offline_configs.write({"custom": {"a": idle_worker("a")}}), {})
    daemon = Daemon(config, catalog=CATALOG)
    assert daemon.not_ready() == ["(daemon starting)"]
    daemon.state = "running"
    assert daemon.not_ready() == []  # no worker started yet: nothing to wait for


def test_sigusr1_logs_where_every_task_waits(offline_configs: ConfigFactory, awsd: Start):
    proc = awsd(offline_configs.write({"custom": {"a": idle_worker("a")}}))
    proc.wait_ready()
    proc.signal(signal.SIGUSR1)
    dump = proc.logs.wait_for("task dump (SIGUSR1)")
    worker = next(t for t in dump["tasks"] if t["task"] == "worker:custom:a")
    assert any(
        "tests/support/workers.py" in frame and "idle" in frame for frame in worker["awaiting"]
    )
    assert proc.http("/readyz")[0] == 200  # and it keeps running
    assert proc.stop() == 0
