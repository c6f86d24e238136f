"""A network round trip on loopback: a TCP proxy that holds every chunk for the one-way delay.

The benchmarks' local AWS endpoint (moto) answers in well under a millisecond of network time,
while a call to AWS from an instance in its region costs 10-30 ms and from a home network
30-100 ms. The kernel here has no netem, so this proxy stands in for the network: each chunk
read from one side is written to the other `rtt / 2` seconds after it arrived, in order, without
serialising the delays (a response of several chunks arrives after one one-way delay, not one per
chunk: a pipe, not a stop-and-wait). Opening a connection costs nothing extra: moto closes every
connection after one response, while AWS keeps them open for clients that reuse them (botocore
and aiobotocore both do), so charging a handshake per call would measure moto's habit, not the
clients. No TLS is emulated.

It runs in a process of its own (`Proxy` starts it), so the benchmarks can report its CPU time
apart from the clients' and the endpoint's:

    python -m bench.latency TARGET_HOST TARGET_PORT RTT_MS

prints the port it listens on and runs until its stdin closes. Each direction of a connection
buffers at most `MAX_BUFFERED` bytes before it stops reading (TCP's own flow control does the
rest), so a fast sender cannot make it grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_BUFFERED = 4 * 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


class _Pipe:
    """One direction of one connection: chunks wait in `held` until their time comes."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.held: deque[tuple[float, bytes]] = deque()
        self.bytes = 0
        self.arrived = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.closed = False

    async def read(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.room.wait()
                data = await reader.read(65536)
                if not data:
                    break
                due = loop.time() + self.delay
                self.held.append((due, data))
                self.bytes += len(data)
                if self.bytes >= MAX_BUFFERED:
                    self.room.clear()
                self.arrived.set()
        finally:
            self.closed = True
            self.arrived.set()

    async def write(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.held:
                if self.closed:
                    break
                self.arrived.clear()
                await self.arrived.wait()
                continue
            due = self.held[0][0]
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            # Everything already due goes out in one write.
            now = loop.time()
            out = []
            while self.held and self.held[0][0] <= now:
                out.append(self.held.popleft()[1])
            size = sum(map(len, out))
            self.bytes -= size
            if self.bytes < MAX_BUFFERED:
                self.room.set()
            writer.write(b"".join(out))
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.write_eof()


async def _connection(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    target: tuple[str, int],
    rtt: float,
) -> None:
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up, down = _Pipe(rtt / 2), _Pipe(rtt / 2)
    tasks = [
        asyncio.ensure_future(up.read(client_r)),
        asyncio.ensure_future(up.write(server_w)),
        asyncio.ensure_future(down.read(server_r)),
        asyncio.ensure_future(down.write(client_w)),
    ]
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        for w in (client_w, server_w):
            with contextlib.suppress(Exception):
                w.close()


async def serve(target_host: str, target_port: int, rtt_ms: float) -> None:
    rtt = rtt_ms / 1000.0
    connections: set[asyncio.Task[None]] = set()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(_connection(reader, writer, (target_host, target_port), rtt))
        connections.add(task)
        task.add_done_callback(connections.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.buffer.read)
    async with server:
        await stdin_closed
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)


class Proxy:
    """The proxy in its own process, in front of `endpoint` (`http://host:port`)."""

    def __init__(self, endpoint: str, rtt_ms: float) -> None:
        host, port = endpoint.removeprefix("http://").rsplit(":", 1)
        self.rtt_ms = rtt_ms
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.latency", host, port, str(rtt_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("the latency proxy did not start")
        self.url = f"http://127.0.0.1:{int(line)}"

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def parse_rtts(text: str) -> list[float]:
    """`--rtt 0,20,60` → [0.0, 20.0, 60.0] (milliseconds)."""
    return [float(part) for part in text.split(",") if part.strip()]


def main(argv: list[str]) -> None:
    host, port, rtt_ms = argv[0], int(argv[1]), float(argv[2])
    try:
        import uvloop

        uvloop.run(serve(host, port, rtt_ms))
    except ImportError:
        asyncio.run(serve(host, port, rtt_ms))


if __name__ == "__main__":
    main(sys.argv[1:])
