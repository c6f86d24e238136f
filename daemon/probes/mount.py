"""The mount probe: is a file system mounted at a path, the expected one, and does it answer?

A check, in order (the first failure is the reason):

1. `/proc/self/mountinfo` (read on the loop: procfs never blocks on a file server) must list
   the path as a mount point (`not_mounted`), of an accepted type (`wrong_filesystem`), of the
   expected EFS id when one is set (`wrong_filesystem`), and not read-only (`read_only`);
2. in `<path>/<probe_dir>/`, a small file is written, fsynced, read back and deleted
   (`io_error` with the failing step; `read_only` when the server refuses writes), each step
   timed, the whole within `conditions.max_latency` when set (`latency`).

A hung NFS server blocks file system calls in the kernel, uninterruptibly, for as long as it
is gone. So the file operations never run on the event loop: each check's run in a thread of
its own (not the default executor, which stuck threads would exhaust), awaited for at most the
probe's `timeout` (`timeout`). A thread that does not return is left running and counted
(`stuck`); until it returns, that endpoint starts no other, and its checks report `timeout`
with how long the operation has been stuck. At most one thread per endpoint is ever blocked.

The EFS id comes from the mount source (`fs-0123456789abcdef0.efs.<region>.amazonaws.com:/`);
a TLS mount by amazon-efs-utils goes through a local stunnel (`127.0.0.1:/`, option `port=N`),
and its id is read from efs-utils' state file `/var/run/efs/fs-<id>.<path>.<N>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.config.probes import EndpointConfig
from daemon.probes.result import Check, MountDetails, ProbeResult, Reason

MOUNTINFO = "/proc/self/mountinfo"
EFS_STATE_DIR = "/var/run/efs"
PROBE_BYTES = b"awsd mount probe\n" * 16
_FS_ID = re.compile(r"\b(fs-[0-9a-f]{8,17})\b")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of `/proc/self/mountinfo`."""

    mount_point: str
    fs_type: str
    source: str
    options: tuple[str, ...]
    """Per-mount options (`rw`, `noatime`)."""
    super_options: tuple[str, ...]
    """Per-superblock options (`rw`, `port=20049` for an efs-utils TLS mount)."""

    @property
    def read_only(self) -> bool:
        return "ro" in self.options or "ro" in self.super_options


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The entries of a mountinfo text (proc(5)): mount point, type, source, options."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields or len(fields) < 10:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 4:
            continue
        entries.append(
            MountEntry(
                mount_point=_unescape(fields[4]),
                fs_type=fields[dash + 1],
                source=_unescape(fields[dash + 2]),
                options=tuple(fields[5].split(",")),
                super_options=tuple(fields[dash + 3].split(",")),
            )
        )
    return entries


def find_mount(entries: list[MountEntry], path: str) -> MountEntry | None:
    """The mount at `path` (the last one listed: a later mount hides an earlier one)."""
    wanted = os.path.normpath(path)
    found = None
    for entry in entries:
        if entry.mount_point == wanted:
            found = entry
    return found


def efs_id(entry: MountEntry, state_dir: str = EFS_STATE_DIR) -> str | None:
    """The EFS file system id of a mount, from its source or efs-utils' TLS state files."""
    match = _FS_ID.search(entry.source)
    if match:
        return match.group(1)
    port = next((o.split("=", 1)[1] for o in entry.super_options if o.startswith("port=")), None)
    if port is None or not entry.source.startswith("127.0.0.1:"):
        return None
    try:
        names = os.listdir(state_dir)
    except OSError:
        return None
    for name in names:
        if name.startswith("fs-") and name.endswith(f".{port}"):
            found = _FS_ID.match(name)
            if found:
                return found.group(1)
    return None


Exercise = Callable[[str, str], list[tuple[str, float]]]
"""`(directory, file name) -> [(step, seconds)]`: the file operations of a check, run in a
thread; raises OSError naming the failing step (`StepError`)."""


class StepError(OSError):
    """A file operation that failed, with the step it failed in."""

    def __init__(self, step: str, error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.step = step


def exercise(directory: str, name: str) -> list[tuple[str, float]]:
    """Write, fsync, read back and delete a small file in `directory` (created when missing)."""
    steps: list[tuple[str, float]] = []
    path = os.path.join(directory, name)
    step = "mkdir"
    try:
        os.makedirs(directory, exist_ok=True)
        step, began = "write", time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, PROBE_BYTES)
            steps.append(("write", time.perf_counter() - began))
            step, began = "fsync", time.perf_counter()
            os.fsync(fd)
            steps.append(("fsync", time.perf_counter() - began))
        finally:
            os.close(fd)
        step, began = "read", time.perf_counter()
        data = Path(path).read_bytes()
        steps.append(("read", time.perf_counter() - began))
        if data != PROBE_BYTES:
            raise OSError(errno.EIO, "read back other bytes than written")
        step, began = "delete", time.perf_counter()
        os.unlink(path)
        steps.append(("delete", time.perf_counter() - began))
    except StepError:
        raise
    except OSError as exc:
        raise StepError(step, exc) from exc
    return steps


class _Stuck:
    """A file operation thread that has not returned yet."""

    __slots__ = ("future", "since")

    def __init__(self, future: asyncio.Future[list[tuple[str, float]]], since: float) -> None:
        self.future = future
        self.since = since


class MountProber:
    """Mount checks, with at most one file operation thread per endpoint (see the module
    docstring). `mountinfo`, `exercise` and `efs_state` are injectable for tests."""

    def __init__(
        self,
        *,
        mountinfo: str = MOUNTINFO,
        exercise: Exercise = exercise,
        efs_state: str = EFS_STATE_DIR,
    ) -> None:
        self.mountinfo = mountinfo
        self.exercise = exercise
        self.efs_state = efs_state
        self._running: dict[str, _Stuck] = {}
        self.stuck_total = 0
        """File operations that outlived their check's timeout (a hung server)."""
        self._file = f".awsd-{socket.gethostname()}-{os.getpid()}"

    @property
    def stuck(self) -> dict[str, float]:
        """Endpoint -> loop time since which its file operation has been stuck."""
        return {name: s.since for name, s in self._running.items() if not s.future.done()}

    def inspect(self, cfg: EndpointConfig) -> tuple[MountDetails, Reason | None, str]:
        """Step 1, from `/proc/self/mountinfo` (procfs: safe to read on the loop)."""
        path = os.path.normpath(cfg.path or "/")
        entry = find_mount(parse_mountinfo(Path(self.mountinfo).read_text()), path)
        if entry is None:
            return MountDetails(False), Reason.NOT_MOUNTED, f"nothing is mounted at {path}"
        fs_id = efs_id(entry, self.efs_state) if cfg.fs_id else None
        details = MountDetails(
            mounted=True,
            fs_type=entry.fs_type,
            source=entry.source,
            fs_id=fs_id,
            read_only=entry.read_only,
        )
        if cfg.fs_type and entry.fs_type not in cfg.fs_type:
            wanted = " or ".join(cfg.fs_type)
            detail = f"{path} is {entry.fs_type} ({entry.source}), not {wanted}"
            return details, Reason.WRONG_FILESYSTEM, detail
        if cfg.fs_id and fs_id != cfg.fs_id:
            return (
                details,
                Reason.WRONG_FILESYSTEM,
                f"{path} is {fs_id or entry.source}, not {cfg.fs_id}",
            )
        if entry.read_only:
            return details, Reason.READ_ONLY, f"{path} is mounted read-only"
        return details, None, ""

    async def probe(self, name: str, cfg: EndpointConfig) -> ProbeResult:
        loop = asyncio.get_running_loop()
        began, wall = loop.time(), time.time()
        details, reason, detail = self.inspect(cfg)
        checks: tuple[Check, ...] = ()
        if details.mounted:
            checks = (Check("mounted", True, f"{details.fs_type} {details.source}"),)
        if reason is None:
            reason, detail, details, io = await self._exercise(name, cfg, details)
            checks += io
        return ProbeResult(
            endpoint=name,
            kind="mount",
            target=cfg.target,
            success=reason is None,
            reason=reason,
            detail=detail,
            started_at=wall,
            duration=loop.time() - began,
            checks=checks,
            mount=details,
        )

    async def _exercise(
        self, name: str, cfg: EndpointConfig, details: MountDetails
    ) -> tuple[Reason | None, str, MountDetails, tuple[Check, ...]]:
        """Step 2: the file operations, in their own thread, within the timeout."""
        loop = asyncio.get_running_loop()
        running = self._running.get(name)
        if running is not None and not running.future.done():
            stuck_for = loop.time() - running.since
            detail = (
                f"the file operation of an earlier check is still stuck after {stuck_for:.0f}s "
                f"(a hung file server): not started again until it returns"
            )
            return Reason.TIMEOUT, detail, dataclasses.replace(details, stuck=True), ()
        future = self._start(os.path.join(cfg.path or "/", cfg.probe_dir))
        self._running[name] = _Stuck(future, loop.time())
        try:
            steps = await asyncio.wait_for(asyncio.shield(future), cfg.timeout)
        except TimeoutError:
            self.stuck_total += 1
            detail = f"write, fsync, read and delete did not finish within {cfg.timeout:g}s"
            return Reason.TIMEOUT, detail, dataclasses.replace(details, stuck=True), ()
        except StepError as exc:
            self._running.pop(name, None)
            reason = Reason.READ_ONLY if exc.errno == errno.EROFS else Reason.IO_ERROR
            return reason, f"{exc.step} in {cfg.probe_dir}: {exc.strerror or exc}", details, ()
        self._running.pop(name, None)
        details = dataclasses.replace(details, phases=tuple(steps))
        total = sum(seconds for _, seconds in steps)
        io = (Check("io", True, ", ".join(f"{s} {t * 1000:.1f}ms" for s, t in steps)),)
        limit = cfg.conditions.max_latency
        if limit is not None and total > limit:
            detail = (
                f"latency: file operations took {total * 1000:.0f}ms (max {limit * 1000:.0f}ms)"
            )
            return Reason.LATENCY, detail, details, io
        return None, f"mounted, I/O in {total * 1000:.1f}ms", details, io

    def _start(self, directory: str) -> asyncio.Future[list[tuple[str, float]]]:
        """Run the file operations in a thread of their own; the future settles when it ends,
        however late."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[tuple[str, float]]] = loop.create_future()

        def settle(value: list[tuple[str, float]] | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                assert value is not None
                future.set_result(value)

        def run() -> None:
            try:
                value = self.exercise(directory, self._file)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, whatever it is
                _call_soon(loop, settle, None, exc)
            else:
                _call_soon(loop, settle, value, None)

        threading.Thread(target=run, name="awsd-mount-probe", daemon=True).start()
        # A stuck operation's outcome arrives after nobody awaits it: retrieve it anyway.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed while the operation was stuck
        loop.call_soon_threadsafe(callback, *args)
