"""A real HTTP proxy in front of the moto server that can answer some AWS calls itself.

AWS behaviours moto does not reproduce (QueueDeletedRecently, throttling, slow answers) are
injected here at the HTTP level, as AWS would send them, so the daemon's real botocore stack
parses them: nothing in the daemon is mocked. It also measures how many requests were in flight
at once, per service, to check the reconciler's concurrency limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    method: str
    path: str


Rule = Callable[[Call], web.Response | None]


def json_error(code: str, message: str, *, query_code: str | None = None) -> web.Response:
    """An error as AWS's JSON protocols send it (with the query-compatible code for SQS)."""
    headers = {"x-amzn-requestid": "awsproxy"}
    if query_code:
        headers["x-amzn-query-error"] = f"{query_code};Sender"
    return web.Response(
        status=400,
        body=json.dumps({"__type": code, "message": message}).encode(),
        content_type="application/x-amz-json-1.0",
        headers=headers,
    )


class AwsProxy:
    def __init__(self, target: str, *, delay: float = 0.0) -> None:
        self.target = target.rstrip("/")
        self.delay = delay
        self.rules: list[Rule] = []
        self.calls: list[Call] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._http = aiohttp.ClientSession(auto_decompress=False)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> AwsProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def operations(self, service: str) -> list[str]:
        return [c.operation for c in self.calls if c.service == service]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = _identify(request, body)
        self.calls.append(call)
        for rule in self.rules:
            answer = rule(call)
            if answer is not None:
                return answer
        service = call.service
        self.in_flight[service] = self.in_flight.get(service, 0) + 1
        self.max_in_flight[service] = max(
            self.max_in_flight.get(service, 0), self.in_flight[service]
        )
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self._forward(request, body)
        finally:
            self.in_flight[service] -= 1

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with self._http.request(
            request.method, self.target + request.path_qs, headers=headers, data=body
        ) as upstream:
            data = await upstream.read()
            out_headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=upstream.status, body=data, headers=out_headers)


def _identify(request: web.Request, body: bytes) -> Call:
    target = request.headers.get("X-Amz-Target", "")
    auth = request.headers.get("Authorization", "")
    service = auth.split("Credential=", 1)[-1].split("/")[3] if "Credential=" in auth else "?"
    if target:
        operation = target.rsplit(".", 1)[-1]
    else:
        form = parse_qs(body.decode(errors="replace")) if body else {}
        operation = (form.get("Action") or parse_qs(request.query_string).get("Action") or [""])[0]
        if not operation:
            operation = f"{request.method} {request.path}"
    return Call(service, operation, request.method, request.path)
