"""Finding the running daemon of a config: the process title, the pid file and the endpoints
file, and `awsd status|reload|stop|dump-tasks` against a real daemon whose health port an
environment override moved (so only its run files say where it is)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.cli.common import Settings, ask_health_port, find_daemon
from daemon.core.local_aws import free_port
from daemon.runtime.process import AlreadyRunning, PidFile, RunFiles
from tests.conftest import ConfigFactory
from tests.support.proc import Awsd, awsd_cli

Start = Callable[..., Awsd]


def idle_worker(tag: str) -> dict[str, Any]:
    return {"entrypoint": "tests.support.workers:idle", "options": {"tag": tag}}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def self_probe_result(proc: Awsd) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        endpoint = proc.http("/status")[1]["workers"]["probes"]["endpoints"]["me"]
        if endpoint["last"] is not None or time.monotonic() > deadline:
            return dict(endpoint)
        time.sleep(0.1)


@pytest.mark.slow
def test_commands_find_the_daemon_of_their_config_wherever_an_override_moved_it(
    offline_configs: ConfigFactory, awsd: Start, tmp_path: Path
):
    configured, actual = free_port(), free_port()
    overrides = {
        "health": {"port": configured},
        "custom": {"a": idle_worker("a")},
        "probes": {
            "endpoints": {
                "me": {
                    "url": "self:/healthz",
                    "interval": "1s",
                    "timeout": "500ms",
                    "alert": {"enabled": False},
                }
            }
        },
    }
    data = offline_configs.data(overrides)
    path = tmp_path / "awsd.toml"
    offline_configs.rewrite(path, data)
    proc = awsd(path, env={"AWSD__HEALTH__PORT": str(actual)}, health_port=actual)
    proc.wait_ready()

    # The process: named awsd for pidof and pgrep -x, titled `awsd: ENV` for ps and systemctl.
    assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "awsd"
    assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().rstrip(b"\0") == b"awsd: test"
    if shutil.which("pidof"):
        pidof = subprocess.run(["pidof", "awsd"], capture_output=True, text=True, check=False)
        assert str(proc.pid) in pidof.stdout.split()

    # Its run files, private to its user, say where it listens (the overridden port).
    state = tmp_path / "state"
    assert mode(state) == 0o700
    assert (state / "awsd.pid").read_text() == f"{proc.pid}\n"
    endpoints = json.loads((state / "endpoints.json").read_text())
    assert endpoints["pid"] == proc.pid
    assert endpoints["health_url"] == f"http://127.0.0.1:{actual}"
    assert mode(state / "awsd.pid") == mode(state / "endpoints.json") == 0o600

    # `self:` was resolved after the override: the self-probe checks this daemon.
    me = self_probe_result(proc)
    assert me["url"] == f"http://127.0.0.1:{actual}/healthz"
    assert me["last"]["success"], me

    # The commands run without the override, as a person in another terminal would.
    status = awsd_cli("status", "--config", str(path))
    assert status.returncode == 0, status.stderr
    assert f"pid {proc.pid}" in status.stdout and f"127.0.0.1:{actual}" in status.stdout
    assert "custom:a" in status.stdout and "alerts open: none" in status.stdout
    as_json = awsd_cli("status", "--config", str(path), "--json")
    assert json.loads(as_json.stdout)["pid"] == proc.pid

    dump = awsd_cli("dump-tasks", "--config", str(path))
    assert dump.returncode == 0, dump.stderr
    assert "worker:custom:a" in dump.stdout and "tests/support/workers.py" in dump.stdout
    proc.logs.wait_for("task dump (SIGUSR1)")

    data["custom"]["b"] = idle_worker("b")
    offline_configs.rewrite(path, data)
    reload = awsd_cli("reload", "--config", str(path))
    assert reload.returncode == 0, reload.stderr
    assert f"reloaded: pid {proc.pid} runs config" in reload.stdout
    proc.logs.wait_for("test worker started", tag="b")

    # A file being edited: reload refuses to send anything; status still finds the daemon.
    path.write_text(path.read_text() + "\n[no_such_section]\n")
    refused = awsd_cli("reload", "--config", str(path))
    assert refused.returncode == 78
    assert "no_such_section" in refused.stderr and "nothing sent" in refused.stderr
    still = awsd_cli("status", "--config", str(path))
    assert still.returncode == 0 and f"pid {proc.pid}" in still.stdout
    assert "warning: the config has 1 problem(s)" in still.stderr
    assert len(proc.logs.matching("reload requested")) == 1

    stop = awsd_cli("stop", "--config", str(path))
    assert stop.returncode == 0, stop.stderr
    assert f"stopped: pid {proc.pid} exited" in stop.stdout
    assert proc.wait(5) == 0
    assert not (state / "awsd.pid").exists() and not (state / "endpoints.json").exists()
    gone = awsd_cli("status", "--config", str(path))
    assert gone.returncode == 3 and "is not running" in gone.stdout


@pytest.mark.slow
def test_a_second_daemon_on_the_same_state_directory_refuses_to_start(
    offline_configs: ConfigFactory, awsd: Start, tmp_path: Path
):
    path = offline_configs.write({"custom": {"a": idle_worker("a")}})
    first = awsd(path)
    first.wait_ready()
    second = awsd(path, env={"AWSD__HEALTH__PORT": str(free_port())})
    assert second.wait(30) == 1
    failed = second.logs.wait_for("startup failed")
    assert f"another awsd (pid {first.pid})" in failed["error"]
    assert str(tmp_path / "state") in failed["error"]
    # The first one is untouched: still running, its run files in place.
    assert first.http("/readyz")[0] == 200
    assert (tmp_path / "state" / "awsd.pid").read_text() == f"{first.pid}\n"
    assert (tmp_path / "state" / "endpoints.json").exists()
    assert first.stop() == 0


@pytest.mark.slow
def test_the_health_port_is_asked_only_for_the_daemon_of_the_same_state_directory(
    offline_configs: ConfigFactory, awsd: Start, tmp_path: Path
):
    """When the state directory is not readable (the daemon's own, another user), the
    configured health port is asked, and /status must name the same state directory."""
    port = free_port()
    proc = awsd(offline_configs.write({"health": {"port": port}}))
    proc.wait_ready()
    url = f"http://127.0.0.1:{port}"

    def settings(state_dir: Path) -> Settings:
        return Settings(Path("x.toml"), "test", state_dir, url, 10.0)

    found = ask_health_port(settings(tmp_path / "state"), "unreadable")
    assert (found.pid, found.via) == (proc.pid, "health port")
    other = ask_health_port(settings(tmp_path / "elsewhere"), "unreadable")
    assert other.pid is None
    assert f"(pid {proc.pid}) runs with state directory {tmp_path / 'state'}" in other.problem
    assert proc.stop() == 0


def test_a_stale_pid_file_is_not_a_running_daemon_and_is_taken_over(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "awsd.pid").write_text("4194303\n")  # left by a daemon that was SIGKILLed
    settings = Settings(Path("x.toml"), "test", state, None, 10.0)
    found = find_daemon(settings)
    assert not found.running and "not running" in found.problem

    mine = PidFile(state)
    mine.acquire()
    running = RunFiles(state).running()
    assert running is not None and running.pid == os.getpid()
    ticks = iter(range(100))
    with pytest.raises(AlreadyRunning, match="another awsd"):
        PidFile(state).acquire(clock=lambda: float(next(ticks)))
    mine.release()
    assert not mine.path.exists() and RunFiles(state).running() is None
