"""A TCP fault proxy for tests: pass traffic through, delay it, reset it, or blackhole it.

It runs its own event loop in a thread (`LoopThread`, shared with `tests/support/aws_front.py`)
so both sync tests (driving a spawned daemon) and async tests can use it. Changing the mode to a
fault also breaks the connections already open, the way a real outage does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

Mode = Literal["pass", "delay", "reset", "blackhole", "refuse"]
T = TypeVar("T")


class LoopThread:
    """An event loop of its own in a daemon thread: a test server on it keeps answering while the
    test's thread blocks (a sync test waiting on a daemon) or its loop is busy (an async test)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coro` on the thread's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.connections = 0
        self._thread = LoopThread()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._thread.run(self._listen())
        return self

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        self.mode, self.delay = mode, delay
        if mode in ("reset", "blackhole", "refuse"):
            self._thread.run(self._break_all())
        if mode == "refuse":
            self._thread.run(self._close_listener())
        elif self._server is None:
            self._thread.run(self._listen())

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._thread.run(self._close_listener())
            self._thread.run(self._break_all())
        self._thread.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _break_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            _reset(writer)
            return
        if self.mode == "blackhole":
            self._writers.add(writer)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            with contextlib.suppress(Exception):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if self.mode == "blackhole":
                continue
            if self.mode == "delay" and self.delay:
                await asyncio.sleep(self.delay)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(Exception):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
