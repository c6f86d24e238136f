"""A real daemon whose state directory is a 2 MiB file system (tmpfs in a mount namespace of its
own): a full disk is a clear 507 at intake, `awsd publish` exit 74, /readyz degraded naming the
outbox, a metric and an event; messages AWS accepted while the disk could not record it are
never sent twice; and everything recovers by itself once space returns."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ConfigFactory
from tests.support.messaging import receive_bodies, subscribe_queue, unique
from tests.support.proc import REPO, Awsd, base_env, prometheus, sample
from tests.support.proxy import FaultProxy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)"),
]


def small_state_dir(state: Path) -> tuple[str, ...]:
    """A prefix that runs the daemon in a private mount namespace with `state` on a 2 MiB
    tmpfs (root only; elsewhere the test is skipped)."""
    script = f'mount -t tmpfs -o size=2m,mode=0700 awsd-test {state} && exec "$0" "$@"'
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script)


def fill(path: Path) -> int:
    """Write `path` until the file system is full; return the bytes written."""
    written = 0
    with path.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
                written += 65536
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return written


def status(proc: Awsd) -> dict[str, Any]:
    code, body = proc.http("/status")
    assert code == 200
    return body


def wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_full_state_directory_is_refused_clearly_never_resends_and_recovers(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto, fault_proxy: FaultProxy, tmp_path
):
    if subprocess.run(["unshare", "--mount", "true"], check=False).returncode != 0:
        pytest.skip("cannot create a mount namespace here (not root?)")
    sns, sqs = boto("sns"), boto("sqs")
    topic = sns.create_topic(Name=unique("full"))["TopicArn"]
    queue = sqs.create_queue(QueueName=unique("full"))["QueueUrl"]
    subscribe_queue(boto, topic, queue, raw=True)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = configs.write(
        {
            "aws": {"endpoint_url": fault_proxy.url, "read_timeout": 2.0},
            # No threshold and no reserve: the disk itself says when it is full.
            "outbox": {
                "min_free_bytes": 0,
                "reserve_bytes": 0,
                "retry_initial": 0.2,
                "retry_max": 0.5,
            },
            "sns": {"topic": topic},
        }
    )
    fault_proxy.set_mode("refuse")
    proc = Awsd(path, prefix=small_state_dir(state))
    proc.health_port = _port(path)
    proc.start()
    try:
        proc.wait_ready()
        accepted = [f"kept-{i}" for i in range(10)]
        for body in accepted:
            assert proc.publish({"message": body})[0] == 200
        # The disk fills up (another program, a log): every byte taken.
        seen_root = proc.root / str(state).lstrip("/")
        fill(seen_root / "filler")
        code, answer = proc.publish({"message": "one too many"})
        assert code == 507, answer
        assert answer["error"].startswith("state directory full: ")
        assert "bytes free" in answer["error"]
        inside = ("nsenter", "-t", str(proc.pid), "-m")  # sees the small file system
        cli = subprocess.run(
            [*inside, sys.executable, "-m", "daemon", "publish", "--config", str(path), "cli"],
            check=False,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=base_env(),
            timeout=60,
        )
        assert cli.returncode == 74, cli.stderr
        assert "state directory full" in cli.stderr
        code, ready = proc.http("/readyz")
        assert code == 503 and ready["status"] == "degraded"
        assert ready["stores"]["outbox"].startswith("state directory full")
        failing = status(proc)["state_dir"]["failing"]["outbox"]
        assert failing["full"] is True and failing["free_bytes"] is not None
        families = prometheus(proc)
        assert sample(families, "awsd_state_store_failing", "awsd_state_store_failing",
                      store="outbox") == 1  # fmt: skip
        proc.logs.wait_for("state directory full: store cannot write", store="outbox")

        # AWS comes back while the disk is still full: the ten are delivered, and the outbox
        # cannot record it. They must not be sent again.
        fault_proxy.set_mode("pass")
        wait(
            lambda: status(proc)["workers"]["outbox"]["outbox"]["settled_not_recorded"] == 10,
            "deliveries not kept in memory",
        )
        proc.logs.wait_for(
            "outbox cannot record settled messages; kept in memory, never sent again"
        )
        failed_before = status(proc)["state_dir"]["failing"]["outbox"]["failed_writes"]
        wait(
            lambda: (
                status(proc)["state_dir"]["failing"]["outbox"]["failed_writes"] >= failed_before + 2
            ),
            "no repair attempts while the disk is full",
        )
        assert sorted(receive_bodies(boto, queue, 10, tries=3)) == sorted(accepted)

        # Space returns: recorded, intake reopens, ready again, without anyone's help.
        (seen_root / "filler").unlink()
        wait(lambda: proc.http("/readyz")[0] == 200, "/readyz not ready after space returned")
        proc.logs.wait_for("state store writes again", store="outbox")
        outbox = status(proc)["workers"]["outbox"]["outbox"]
        assert outbox["settled_not_recorded"] == 0 and outbox["waiting"] == 0
        assert outbox["intake"] == "open"
        assert proc.publish({"message": "after"})[0] == 200
        assert receive_bodies(boto, queue, 1, tries=10) == ["after"]
        assert receive_bodies(boto, queue, 1, tries=2) == []  # nothing sent twice
        assert proc.stop() == 0
    finally:
        proc.close()


def _port(path: Path) -> int:
    import tomllib

    return int(tomllib.loads(path.read_text())["health"]["port"])
