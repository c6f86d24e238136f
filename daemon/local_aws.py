"""The embedded local AWS: a moto server child process, for `make run` and for tests.

The child is `python -m daemon.local_aws PORT`: it exits as soon as its stdin closes, which happens
when the daemon exits for any reason (SIGKILL included), so no orphan server is ever left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping

import aiohttp

from daemon.logs import get_logger

log = get_logger()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalAws:
    """Starts and stops one moto server on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.endpoint = f"http://{host}:{self.port}"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 20.0) -> str:
        if importlib.util.find_spec("moto") is None:
            raise RuntimeError(
                "aws.local needs the moto server: install awsd with the 'local' extra "
                "(pip install 'awsd[local]')"
            )
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon.local_aws",
            self.host,
            str(self.port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Its own session: Ctrl-C in a terminal signals the whole foreground group, and the
            # endpoint must outlive the daemon's final flush of metrics and logs. It still
            # exits with the daemon, when its stdin closes.
            start_new_session=True,
        )
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while loop.time() < give_up:
                if self._proc.returncode is not None:
                    raise RuntimeError(
                        f"local moto server exited with code {self._proc.returncode}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with http.get(f"{self.endpoint}/moto-api/") as resp:
                        if resp.status == 200:
                            log.info(
                                "local AWS endpoint started",
                                endpoint=self.endpoint,
                                pid=self._proc.pid,
                            )
                            return self.endpoint
                await asyncio.sleep(0.05)
        await self.stop()
        raise RuntimeError(f"local moto server did not answer on {self.endpoint} in {timeout}s")

    async def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def answers(endpoint: str, timeout: float = 1.0) -> bool:
    """True when a moto server answers at `endpoint`."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(f"{endpoint}/moto-api/") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def attach_or_start(
    port: int, environ: Mapping[str, str] = os.environ
) -> tuple[str, LocalAws | None]:
    """The local endpoint to use: AWS_ENDPOINT_URL when set, a moto server already answering on
    the fixed `port`, or a new one (returned so the caller stops it)."""
    reuse = environ.get("AWS_ENDPOINT_URL")
    if reuse:
        log.info("local AWS: using AWS_ENDPOINT_URL", endpoint=reuse)
        return reuse, None
    if port:
        existing = f"http://127.0.0.1:{port}"
        if await answers(existing):
            log.info("local AWS: reusing the moto server already on its port", endpoint=existing)
            return existing, None
    local = LocalAws(port=port)
    return await local.start(), local


def _exit_when_parent_goes() -> None:
    with contextlib.suppress(Exception):
        sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str]) -> None:
    host, port = argv[0], argv[1]
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import main as moto_main  # noqa: PLC0415 - only in the child process

    time.sleep(0)  # let the watcher thread start before the server blocks
    moto_main(["-H", host, "-p", port])


if __name__ == "__main__":
    main(sys.argv[1:])
