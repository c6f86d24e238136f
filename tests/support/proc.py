"""A real `awsd` process under test: spawn it, read its JSON logs, signal it, wait for it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]

Predicate = Callable[[dict[str, Any]], bool]


HOST_ONLY = ("AWSD", "AWS_", "NOTIFY_", "WATCHDOG_")
"""Variables of the machine running the tests (real credentials, systemd's sockets, awsd's own
settings) that must reach neither the tests nor anything they spawn."""
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Credentials for the moto server; with them nothing can reach a real account or the instance
metadata service."""


def isolated(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without what `HOST_ONLY` names, with the dummy AWS credentials."""
    return {k: v for k, v in environ.items() if not k.startswith(HOST_ONLY)} | DUMMY_AWS


def base_env(**extra: str) -> dict[str, str]:
    """Environment for a spawned daemon or client: loopback only, dummy credentials."""
    return isolated(os.environ) | {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"} | extra


def awsd_cli(
    *args: str,
    stdin: bytes | None = None,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`awsd ARGS` run to its end in a process of its own, the way a person runs it; stdout and
    stderr come back as text (bytes that are not UTF-8 replaced, so a test can show them).
    `env` adds to the isolated environment (credentials of a test IAM user)."""
    done = subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        input=stdin,
        capture_output=True,
        check=False,
        cwd=REPO,
        env=base_env(**(env or {})),
        timeout=timeout,
    )
    out, err = (stream.decode(errors="replace") for stream in (done.stdout, done.stderr))
    return subprocess.CompletedProcess(done.args, done.returncode, out, err)


class LogCapture:
    """Collects a stream of JSON lines from a thread; `wait_for` blocks until a match arrives."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()

    def feed(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            with self._cond:
                self.raw.append(line)
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        self.events.append(event)
                self._cond.notify_all()

    def matching(
        self, event: str | None = None, where: Predicate | None = None, **fields: Any
    ) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if _matches(e, event, where, fields)]

    def wait_for(
        self,
        event: str | None = None,
        *,
        timeout: float = 15.0,
        count: int = 1,
        where: Predicate | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if _matches(e, event, where, fields)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "".join(self.raw[-25:])
                    raise AssertionError(
                        f"no log {event!r} {fields} x{count} within {timeout}s; last lines:\n{tail}"
                    )
                self._cond.wait(left)

    def text(self) -> str:
        with self._cond:
            return "".join(self.raw)


def _matches(
    e: dict[str, Any], event: str | None, where: Predicate | None, fields: dict[str, Any]
) -> bool:
    if event is not None and e.get("event") != event:
        return False
    if any(e.get(k) != v for k, v in fields.items()):
        return False
    return where is None or bool(where(e))


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"awsd-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="awsd-n-")
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append(data.decode())
                self._cond.notify_all()

    def wait_for(self, needle: str, *, timeout: float = 15.0, after: int = 0) -> tuple[int, str]:
        """The first message at index >= `after` with a line starting with `needle`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, msg in enumerate(self.messages[after:], start=after):
                    if any(line.startswith(needle) for line in msg.splitlines()):
                        return i, msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no notify {needle!r} in {timeout}s: {self.messages}")
                self._cond.wait(left)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(2)


class Awsd:
    """One spawned `awsd run` process."""

    def __init__(
        self,
        config: Path,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        umask: int | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.env = base_env(**(env or {}))
        self.args = args
        self.umask = umask
        self.prefix = prefix
        """A command the daemon runs under (`unshare -m ...`), exec'ing it in the end."""
        self.logs = LogCapture()
        self.stderr = LogCapture()
        self.proc: subprocess.Popen[str] | None = None
        self.health_port: int | None = None

    def start(self) -> Awsd:
        umask = self.umask
        self.proc = subprocess.Popen(
            [
                *self.prefix,
                sys.executable,
                "-m",
                "daemon",
                "run",
                "--config",
                str(self.config),
                *self.args,
            ],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            umask=-1 if umask is None else umask,
        )
        self._readers = []
        for stream, capture in ((self.proc.stdout, self.logs), (self.proc.stderr, self.stderr)):
            reader = threading.Thread(target=capture.feed, args=(stream,), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        return self.logs.wait_for("ready", timeout=timeout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not go."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        """Kill if still running, drain the output readers and close the pipes."""
        self.kill()
        for reader in getattr(self, "_readers", []):
            reader.join(5)
        if self.proc is not None:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()

    def state_dir(self) -> Path:
        """The state directory of its config (as this process sees it)."""
        import tomllib

        return Path(tomllib.loads(self.config.read_text())["runtime"]["state_dir"])

    def token(self) -> str:
        """The ingest token the daemon created (`<state_dir>/ingest.token`)."""
        return (self.root / str(self.state_dir()).lstrip("/") / "ingest.token").read_text().strip()

    @property
    def root(self) -> Path:
        """Where this process's files are seen from here: `/`, or `/proc/<pid>/root` when it
        runs under a prefix (in a mount namespace of its own: a small state file system)."""
        return Path(f"/proc/{self.pid}/root") if self.prefix else Path("/")

    def publish(self, payload: Any, *, timeout: float = 10.0) -> tuple[int, Any]:
        """POST /publish as `awsd publish` does (JSON, the ingest token)."""
        return self.http(
            "/publish",
            method="POST",
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"},
            timeout=timeout,
        )

    def http(
        self,
        path: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        assert self.health_port, "config has no health port"
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.health_port}{path}",
            data=body,
            method=method,
            headers=headers or {},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()


def prometheus(proc: Awsd) -> dict[str, Any]:
    status, text = proc.http("/metrics")
    assert status == 200, text
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")
