"""The embedded local AWS: a moto server child process, for `make run` and for tests.

The child is `python -m daemon.core.local_aws PORT`: it exits as soon as its stdin closes, which
happens when the daemon exits for any reason (SIGKILL included), so no orphan server is ever left
behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

from daemon.core.logs import get_logger

log = get_logger()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalAws:
    """One moto server child process on a loopback port.

    `spawn()` is synchronous and cheap, so `awsd run` can start the child before its own heavy
    imports and the two boot in parallel; `start()` waits until it answers."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.endpoint = f"http://{host}:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        if self._proc is not None:
            return
        if importlib.util.find_spec("moto") is None:
            raise RuntimeError(
                "aws.local needs the moto server: install awsd with the 'local' extra "
                "(pip install 'awsd[local]')"
            )
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.core.local_aws", self.host, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: Ctrl-C in a terminal signals the whole foreground group, and the
            # endpoint must outlive the daemon's final flush of metrics and logs. It still
            # exits with the daemon, when its stdin closes.
            start_new_session=True,
        )

    async def start(self, timeout: float = 20.0) -> str:
        """Spawn if not yet done, and wait until the server answers."""
        self.spawn()
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while loop.time() < give_up:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(f"local moto server exited with code {code}")
            if await answers(self.endpoint, timeout=1.0):
                log.info("local AWS endpoint started", endpoint=self.endpoint, pid=self._proc.pid)
                return self.endpoint
            await asyncio.sleep(0.05)
        await self.stop()
        raise RuntimeError(f"local moto server did not answer on {self.endpoint} in {timeout}s")

    async def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)


def spawn_early(port: int, environ: Mapping[str, str] = os.environ) -> LocalAws | None:
    """Start the local endpoint's child now (before heavy imports), unless AWS_ENDPOINT_URL is
    set or something already listens on the fixed port (then `attach_or_start` decides)."""
    if environ.get("AWS_ENDPOINT_URL"):
        return None
    if port:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return None
    local = LocalAws(port=port)
    local.spawn()
    return local


async def answers(endpoint: str, timeout: float = 1.0) -> bool:
    """True when a moto server answers at `endpoint`."""
    import aiohttp  # noqa: PLC0415 - keeps `spawn_early` free of heavy imports

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(f"{endpoint}/moto-api/") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def attach_or_start(
    port: int, environ: Mapping[str, str] = os.environ, *, early: LocalAws | None = None
) -> tuple[str, LocalAws | None]:
    """The local endpoint to use: AWS_ENDPOINT_URL when set, the child `spawn_early` started,
    a moto server already answering on the fixed `port`, or a new one (returned so the caller
    stops it) on `port`, or on a free port (with a warning) when something else holds it."""
    if early is not None:
        return await early.start(), early
    reuse = environ.get("AWS_ENDPOINT_URL")
    if reuse:
        log.info("local AWS: using AWS_ENDPOINT_URL", endpoint=reuse)
        return reuse, None
    if port:
        existing = f"http://127.0.0.1:{port}"
        if await answers(existing):
            log.info("local AWS: reusing the moto server already on its port", endpoint=existing)
            return existing, None
        if port_taken(port):
            local = LocalAws()
            log.warning(
                "local AWS: aws.local_port is taken by something that is not a moto server; "
                "starting one on a free port instead",
                port=port,
                endpoint=local.endpoint,
                consequence=(
                    "awsd's commands find it (the daemon writes where it listens into its "
                    f"state directory), other tools on port {port} (`aws --endpoint-url "
                    f"http://127.0.0.1:{port}`) do not: free the port, or change aws.local_port"
                ),
            )
            return await local.start(), local
    local = LocalAws(port=port)
    return await local.start(), local


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when something is bound to `port` (SO_REUSEADDR, as servers bind: connections
    lingering in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _exit_when_parent_goes() -> None:
    with contextlib.suppress(Exception):
        sys.stdin.buffer.read()
    os._exit(0)


def _ignore_signal(signum: int, frame: object) -> None:
    del signum, frame


def main(argv: list[str]) -> None:
    host, port = argv[0], argv[1]
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto import server  # noqa: PLC0415 - only in the child process

    if not sys.stdin.isatty():
        # Ctrl-C in a terminal (or `timeout`) signals the whole process group, and moto's own
        # handler would stop serving at once: the endpoint must outlive the daemon's graceful
        # stop, which still flushes to it. It goes when the daemon closes our stdin (or dies).
        server.signal_handler = _ignore_signal
    from moto.core.config import default_user_config  # noqa: PLC0415

    # No Docker here: Lambda invocations (SNS deliveries, asynchronous invokes) are accepted and
    # answered at once instead of failing to start a container.
    default_user_config["lambda"] = {**default_user_config.get("lambda", {}), "use_docker": False}
    moto_main = server.main

    time.sleep(0)  # let the watcher thread start before the server blocks
    moto_main(["-H", host, "-p", port])


if __name__ == "__main__":
    main(sys.argv[1:])
