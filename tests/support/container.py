"""A throwaway machine with a real systemd as PID 1, for end-to-end tests of the service.

`systemd-nspawn --boot` on an overlay of this machine's own root file system: every write lands
in a temporary upper directory, so the host is never changed. The container has its own network
namespace (loopback only: no port clashes with the host, no traffic leaves), its own machine id
and journal. Commands run inside through `nsenter`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

INSIDE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_PAGER": ""}


def unavailable() -> str | None:
    """Why a container cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn and an overlay mount)"
    if not shutil.which("systemd-nspawn"):
        return "needs systemd-nspawn (apt-get install systemd-container; `make test` does)"
    if not Path("/lib/systemd/systemd").exists():
        return "needs systemd installed on this machine (it boots this root file system)"
    return None


class Container:
    def __init__(self, work: Path, *, binds: tuple[Path, ...] = ()) -> None:
        self.work = work
        self.binds = binds
        self.merged = work / "merged"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.log = work / "nspawn.log"

    def start(self, timeout: float = 60.0) -> Container:
        upper, workdir = self.work / "upper", self.work / "overlay-work"
        for d in (upper, workdir, self.merged):
            d.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir=/,upperdir={upper},workdir={workdir}",
                str(self.merged),
            ],
            check=True,
        )
        # Its own identity: journald refuses to share the host's machine id.
        (self.merged / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        binds = [f"--bind-ro={b}" for b in self.binds]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "--quiet",
                    "--boot",
                    "--register=no",
                    "--keep-unit",
                    "--private-network",
                    "--console=pipe",
                    f"--directory={self.merged}",
                    *binds,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.pid1:
            self._check_alive()
            self.pid1 = self._find_pid1()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container did not boot: {self.log.read_text()}")
            time.sleep(0.1)
        # Until its manager answers on its private socket, systemctl prints nothing.
        state = ""
        while state not in ("running", "degraded"):
            self._check_alive()
            if time.monotonic() > deadline or state not in ("", "initializing", "starting"):
                raise RuntimeError(f"the container's systemd is {state!r}")
            time.sleep(0.1)
            state = self.run("systemctl", "is-system-running", "--wait", check=False).stdout.strip()
        return self

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited: {self.log.read_text()}")

    def _find_pid1(self) -> int:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return 0

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces, a plain environment)."""
        proc = subprocess.run(
            ["nsenter", f"--target={self.pid1}", "--all", "--wd", *cmd],
            capture_output=True,
            text=True,
            env=INSIDE_ENV,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"in the container: {' '.join(cmd)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def write(self, path: str, text: str, *, append: bool = False) -> None:
        self.run("sh", "-c", f"cat {'>>' if append else '>'} {path}", input=text)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # nspawn turns SIGTERM into a clean shutdown of the container's systemd.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.merged.is_mount():
            subprocess.run(["umount", "--lazy", str(self.merged)], check=False)
        shutil.rmtree(self.work, ignore_errors=True)
