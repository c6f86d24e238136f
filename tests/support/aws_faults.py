"""A real HTTP server in front of the moto server: forwards AWS calls, records them, and answers
chosen operations with real AWS error responses (throttling, 5xx) a given number of times.

Like FaultProxy it runs its own event loop in a thread, so sync tests driving a spawned daemon
and async tests can both use it. Recorded requests let tests see what went over the wire
(operation, Content-Encoding, body size) without touching botocore.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

QUERY_ERROR = (
    '<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><Error>'
    "<Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
)

QUERY_OK = (
    '<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">'
    "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId>"
    "</ResponseMetadata></PutMetricDataResponse>"
)


@dataclass(frozen=True)
class Recorded:
    operation: str
    content_encoding: str
    body_bytes: int
    """Size of the body as sent (compressed when it was)."""
    raw_bytes: int
    """Size once decompressed."""
    answered: int


class AwsFaultServer:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.requests: list[Recorded] = []
        self._faults: dict[str, list[tuple[int, str]]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AwsFaultServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def fail(self, operation: str, times: int, status: int = 400, code: str = "Throttling") -> None:
        """Answer the next `times` calls of `operation` with this AWS error."""
        with self._lock:
            self._faults.setdefault(operation, []).extend([(status, code)] * times)

    def accept(self, operation: str, times: int) -> None:
        """Answer the next `times` calls of `operation` with success, without forwarding them
        (moto takes seconds to parse 1000 metric data points; the tests need the request)."""
        self.fail(operation, times, 200, "")

    def calls(self, operation: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _start(self) -> None:
        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # aiohttp hands over the body decompressed; Content-Length is the size as sent.
        raw = await request.read()
        encoding = request.headers.get("Content-Encoding", "")
        sent = int(request.headers.get("Content-Length", len(raw)))
        operation, json_protocol = _operation(request, raw)
        with self._lock:
            pending = self._faults.get(operation)
            fault = pending.pop(0) if pending else None
            status = fault[0] if fault else 0
            self.requests.append(Recorded(operation, encoding, sent, len(raw), status))
        if fault is not None:
            return _error(fault[0], fault[1], json_protocol)
        assert self._http is not None
        drop = {"host", "content-encoding", "content-length"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
        async with self._http.request(
            request.method, self.target + request.path_qs, headers=headers, data=raw
        ) as upstream:
            payload = await upstream.read()
            skip = {"transfer-encoding", "content-length", "connection", "content-encoding"}
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in skip}
            return web.Response(status=upstream.status, body=payload, headers=out)


def _operation(request: web.Request, raw: bytes) -> tuple[str, bool]:
    target = request.headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1], True
    form = parse_qs(raw.decode("utf-8", errors="replace"))
    return form.get("Action", ["?"])[0], False


def _error(status: int, code: str, json_protocol: bool) -> web.Response:
    if status == 200:
        if json_protocol:
            return web.Response(text="{}", content_type="application/x-amz-json-1.1")
        return web.Response(text=QUERY_OK, content_type="text/xml")
    message = "Rate exceeded" if "Throttl" in code else "injected by the test"
    if json_protocol:
        return web.Response(
            status=status,
            text=json.dumps({"__type": code, "message": message}),
            content_type="application/x-amz-json-1.1",
        )
    kind = "Receiver" if status >= 500 else "Sender"
    return web.Response(
        status=status,
        text=QUERY_ERROR.format(kind=kind, code=code, message=message),
        content_type="text/xml",
    )
