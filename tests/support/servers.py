"""Real local servers for probe tests: an aiohttp app with good and bad endpoints, TLS with
certificates made by trustme, and raw TCP servers that misbehave (blackhole, garbage)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from daemon.config.probes import EndpointConfig
from daemon.probes.prober import Prober
from daemon.probes.result import ProbeResult

STATE = web.AppKey("state", dict)
"""`app[STATE]["healthy"] = False` turns /switch to 503."""


def probe_app() -> web.Application:
    app = web.Application()
    app[STATE] = {"flap": 0, "healthy": True}

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="all good")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.Response(text="late")

    async def error(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def maintenance(_: web.Request) -> web.Response:
        return web.Response(text="<h1>Down for maintenance</h1>")

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "UP", "checks": [{"name": "db", "ok": True}]})

    async def degraded(_: web.Request) -> web.Response:
        return web.json_response({"status": "DOWN"})

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def flap(request: web.Request) -> web.Response:
        request.app[STATE]["flap"] += 1
        return web.Response(status=200 if request.app[STATE]["flap"] % 2 else 503)

    async def switch(request: web.Request) -> web.Response:
        return web.Response(status=200 if request.app[STATE]["healthy"] else 503, text="switch")

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * 300_000)

    for path, handler in [
        ("/ok", ok), ("/slow", slow), ("/500", error), ("/maintenance", maintenance),
        ("/health", health), ("/degraded", degraded), ("/redirect", redirect), ("/loop", loop),
        ("/flap", flap), ("/switch", switch), ("/big", big),
    ]:  # fmt: skip
        app.router.add_get(path, handler)
    return app


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(reply: bytes | None) -> AsyncIterator[int]:
    """A TCP server that answers every connection with `reply` and closes, or (None) accepts
    and never answers: a blackhole."""
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        if reply is None:
            return  # keep the connection open, say nothing
        with contextlib.suppress(Exception):
            await reader.read(1024)
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def check(prober: Prober, url: str, **fields: Any) -> ProbeResult:
    """One check of `url` as endpoint "t" (timeout 2 s unless given)."""
    fields.setdefault("timeout", 2)
    return await prober.check("t", EndpointConfig(url=url, **fields))
