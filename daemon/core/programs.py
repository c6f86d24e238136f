"""Running external programs: the `command` handler and command readings of the publisher.

Promises:
- a program runs in its own process group, without a shell unless one is asked for, with a
  timeout; on timeout the whole group gets SIGTERM, then SIGKILL after a grace period, and when
  the caller is cancelled (a handler timeout, a shutdown) the group is killed at once, so no
  grandchild outlives the call;
- output is read as it comes and kept only up to a bound (a chatty program cannot grow the
  daemon's memory), the rest is counted and dropped;
- the environment is the daemon's minus AWS credentials (a script does not need the daemon's
  keys unless the config says so), plus what the caller adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

AWS_SECRET_ENV = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    }
)
"""Removed from a program's environment unless the config passes credentials on."""


@dataclass(frozen=True, slots=True)
class ProgramResult:
    """How a program run ended."""

    exit_code: int | None
    """The exit status; negative for a signal; None when it timed out."""
    stdout: bytes
    """The first `max_output` bytes written to stdout."""
    stderr: bytes
    """The first `max_output` bytes written to stderr."""
    duration: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        """One line for logs and handler errors: how it ended and the end of its stderr."""
        if self.timed_out:
            how = f"timed out after {self.duration:.1f}s"
        elif self.exit_code is not None and self.exit_code < 0:
            how = f"killed by signal {-self.exit_code}"
        else:
            how = f"exited with {self.exit_code}"
        tail = self.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return how + (f": {' | '.join(tail)}" if tail else "")


def program_env(
    extra: Mapping[str, str] | None = None,
    *,
    pass_aws_credentials: bool = False,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a program: `base` (the daemon's) minus AWS secrets, plus `extra`."""
    env = dict(os.environ if base is None else base)
    if not pass_aws_credentials:
        for name in AWS_SECRET_ENV:
            env.pop(name, None)
    env.update(extra or {})
    return env


async def run_program(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    shell: bool = False,
    max_output: int = 64 * 1024,
    kill_grace: float = 2.0,
) -> ProgramResult:
    """Run `argv` (or, with `shell`, `argv[0]` through /bin/sh -c) to completion or timeout.

    Raises OSError when the program cannot be started (not found, not executable)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    if shell:
        proc = await asyncio.create_subprocess_shell(
            argv[0],
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    out, err = bytearray(), bytearray()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(
                _feed(proc, stdin),
                _drain(proc.stdout, out, max_output),
                _drain(proc.stderr, err, max_output),
            )
            await proc.wait()
    except TimeoutError:
        await _terminate(proc, kill_grace)
        return ProgramResult(None, bytes(out), bytes(err), loop.time() - began, timed_out=True)
    except BaseException:
        # Cancelled (a handler timeout, a shutdown): do not linger, take the whole group down,
        # and reap it (a SIGKILLed process exits at once) so no zombie or open pipe is left.
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(1.0):
                await asyncio.shield(proc.wait())
        raise
    return ProgramResult(proc.returncode, bytes(out), bytes(err), loop.time() - began)


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if proc.stdin is None:
        return
    # A program that exits without reading its input is not an error of ours.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()
        await proc.stdin.wait_closed()


async def _drain(stream: asyncio.StreamReader | None, into: bytearray, limit: int) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        room = limit - len(into)
        if room > 0:
            into += chunk[:room]


async def _terminate(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the group, then SIGKILL if it has not exited within `grace` seconds."""
    _signal_group(proc, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        _signal_group(proc, signal.SIGKILL)
        await proc.wait()


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    if proc.returncode is not None and sig != signal.SIGKILL:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
