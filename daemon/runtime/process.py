"""What the daemon does to itself as a process: its title, its pid file and the files that say
where it listens, task dumps, memory settling, a hard exit.

These act on the whole process (its name in `ps`, every asyncio task, the garbage collector,
libc's heap), so they live apart from the lifecycle that calls them.

The run files, in the state directory (private to the daemon's user: 0700, files 0600):

- `awsd.pid` — the pid, held locked (`flock`) for the daemon's whole life. A second daemon with
  the same state directory (it would share the outbox and the alert state) refuses to start,
  and a pid file left by a killed daemon is recognised as stale: nobody holds its lock.
- `endpoints.json` — where it listens: the health server, the embedded AWS endpoint. Written at
  startup and after a reload, so `awsd status`, `awsd publish` or `awsd plan -e local` find the
  daemon whatever ports environment overrides gave it.
- `tasks.json` — the last task dump (SIGUSR1, `awsd dump-tasks`).

`awsd reload|stop|status|dump-tasks` read them through `RunFiles`; only this module knows their
format.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import gc
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.base.files import write_private
from daemon.core.logs import get_logger

log = get_logger()

PID_FILE = "awsd.pid"
ENDPOINTS_FILE = "endpoints.json"
TASKS_FILE = "tasks.json"
_PR_SET_NAME = 15
_COMM_MAX = 15
_LOCK_PATIENCE = 1.0
"""Seconds a starting daemon retries the pid file's lock: a command that checks whether the
daemon runs holds it for an instant."""


# --- the process title ---------------------------------------------------------------------------


def set_process_title(title: str, name: str = "awsd") -> bool:
    """Show the process as `title` in `ps`, `top -c` and `systemctl status`, and name it `name`
    for `pidof`, `pgrep -x`, `killall` and systemd's "Main PID: 123 (awsd)". Linux only; returns
    whether the title was set.

    The name is the kernel's `comm` (prctl PR_SET_NAME, at most 15 bytes). The title replaces
    the command line in place: the kernel shows /proc/self/cmdline from the memory the
    arguments were passed in (its addresses are in /proc/self/stat), which CPython copied at
    startup and never reads again — what the setproctitle extension does, without a compiler
    on a Pi. The title is cut to the length of the original command line."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:_COMM_MAX], 0, 0, 0)
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
    except (OSError, IndexError, ValueError):
        return False
    size = end - start
    if start <= 0 or size < 2:
        return False
    # One argument, spaces included (`systemctl status` shows it quoted): sysvinit's pidof, as
    # Debian has it, finds `awsd: prod` by its name only while argv[0] holds the whole title.
    text = title.encode(errors="replace")[: size - 1]
    ctypes.memmove(start, text + b"\0" * (size - len(text)), size)
    return True


# --- run files -----------------------------------------------------------------------------------


class AlreadyRunning(Exception):
    """Another daemon holds the pid file of this state directory."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"another awsd ({who}) runs with the state directory {path.parent} (it holds "
            f"{path.name}); two daemons must not share an outbox and alert state: stop it "
            "(awsd stop), or give this one its own runtime.state_dir"
        )


class PidFile:
    """`<state_dir>/awsd.pid`, locked for as long as the daemon runs."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / PID_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, clock: Any = time.monotonic) -> None:
        """Take the lock and write our pid; AlreadyRunning when another daemon holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        give_up = clock() + _LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= give_up:
                    holder = _read_pid(fd)
                    os.close(fd)
                    raise AlreadyRunning(self.path, holder) from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the file and drop the lock (removed first: nobody reads a dead pid)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Running:
    """A running daemon, as its run files describe it."""

    pid: int
    health_url: str | None
    """Its health server as a client on this machine reaches it (None: off)."""
    aws_endpoint: str | None
    """The embedded local AWS endpoint it uses (`aws.local`), or None."""
    env: str | None
    config: str | None
    started_at: str | None
    starting: bool = False
    """It has not said where it listens yet (no endpoints.json of its pid)."""


class NotReadable(Exception):
    """The state directory or a run file exists but this user may not read it."""


class RunFiles:
    """The run files of one state directory: written by the daemon, read by the commands."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)

    @property
    def tasks(self) -> Path:
        return self.dir / TASKS_FILE

    def write_endpoints(
        self,
        *,
        health_url: str | None,
        aws_endpoint: str | None,
        env: str,
        config: str,
        started_at: float,
    ) -> None:
        info = {
            "pid": os.getpid(),
            "health_url": health_url,
            "aws_endpoint": aws_endpoint,
            "env": env,
            "config": config,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        }
        write_private(self.dir / ENDPOINTS_FILE, (json.dumps(info, indent=2) + "\n").encode())

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            (self.dir / ENDPOINTS_FILE).unlink()

    def running(self) -> Running | None:
        """The daemon holding this directory's pid file, or None (no pid file, or a stale one
        nobody holds). NotReadable when this user cannot tell (the daemon's private files)."""
        path = self.dir / PID_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise NotReadable(f"{path}: permission denied") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
            else:
                return None  # nobody holds it: a stale file from a daemon that was killed
        finally:
            os.close(fd)
        if pid is None:
            return None  # the daemon is between taking the lock and writing its pid
        info = self._endpoints(pid)
        return Running(
            pid=pid,
            health_url=info.get("health_url"),
            aws_endpoint=info.get("aws_endpoint"),
            env=info.get("env"),
            config=info.get("config"),
            started_at=info.get("started_at"),
            starting=not info,
        )

    def _endpoints(self, pid: int) -> dict[str, Any]:
        try:
            info = json.loads((self.dir / ENDPOINTS_FILE).read_text())
        except (OSError, ValueError):
            return {}  # still starting (written once it listens)
        return info if isinstance(info, dict) and info.get("pid") == pid else {}


# --- task dumps, memory, exit --------------------------------------------------------------------


def task_dump() -> list[dict[str, Any]]:
    """Every asyncio task with the chain of awaits it is suspended in, innermost last."""
    tasks = []
    for task in asyncio.all_tasks():
        where: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(where) < 20:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                path = frame.f_code.co_filename.rsplit("/site-packages/", 1)[-1]
                where.append(f"{path}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        tasks.append({"task": task.get_name(), "awaiting": where})
    return sorted(tasks, key=lambda t: str(t["task"]))


def dump_tasks(to: Path | None = None) -> None:
    """SIGUSR1 (`awsd dump-tasks`): log every asyncio task and where it waits (for a daemon
    that seems stuck), and write the same to `to` (the state directory's tasks.json) for the
    command to print."""
    tasks = task_dump()
    log.warning("task dump (SIGUSR1)", tasks=tasks)
    if to is not None:
        dump = {"pid": os.getpid(), "at": time.time(), "tasks": tasks}
        try:
            write_private(to, (json.dumps(dump, indent=1) + "\n").encode())
        except OSError as exc:
            log.warning("cannot write the task dump", path=str(to), reason=exc.strerror)


def settle_memory() -> None:
    """After startup (and reloads): move the long-lived objects (config models, botocore service
    models) out of the garbage collector's way, and hand freed startup memory back to the OS.
    The collector is enabled here: `awsd run` starts with it off (see `daemon.cli.entry`)."""
    gc.collect()
    gc.freeze()
    gc.enable()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def hard_exit(total: float) -> None:
    sys.stderr.write(f"awsd: shutdown did not finish within {total}s; exiting now\n")
    sys.stderr.flush()
    os._exit(1)


def signal_process(pid: int, signum: int) -> str | None:
    """Send `signum` to `pid`; None when sent, else why not (in words for the operator)."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return f"pid {pid} is gone"
    except PermissionError:
        return (
            f"not permitted to signal pid {pid}: run as root or as the daemon's user "
            "(under systemd: systemctl reload|stop awsd)"
        )
    except OSError as exc:
        return f"cannot signal pid {pid}: {errno.errorcode.get(exc.errno or 0, exc)}"
    return None
