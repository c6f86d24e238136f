"""A real HTTP front for the moto server that answers some AWS JSON-protocol calls with faults.

moto never throttles and its shard iterators never expire; AWS does both. This front sits
between a client and moto (like `FaultProxy`, but speaking the protocol): calls pass through,
except those a rule claims, which get the error AWS would send (`__type` in a JSON body, HTTP
400), or — for PutRecords — a partial failure of chosen records. It runs its own event loop in
a thread, so sync tests driving a daemon and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class Rule:
    operation: str
    code: str
    times: int
    """How many calls this rule claims; -1: every call."""
    every: int = 1
    """Claim every n-th matching call."""
    seen: int = 0


class AwsFront:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.fail_put: Callable[[dict[str, Any]], bool] | None = None
        """PutRecords: records for which this returns True fail (throttled); others are written."""
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AwsFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def inject(self, operation: str, code: str, *, times: int = 1, every: int = 1) -> Rule:
        rule = Rule(operation, code, times, every)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.fail_put = None

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _claim(self, operation: str) -> str | None:
        with self._lock:
            for rule in self.rules:
                if rule.operation != operation or rule.times == 0:
                    continue
                rule.seen += 1
                if rule.seen % rule.every:
                    continue
                if rule.times > 0:
                    rule.times -= 1
                return rule.code
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1] if target else ""
        with self._lock:
            self.calls[operation] += 1
        code = self._claim(operation) if operation else None
        if code is not None:
            with self._lock:
                self.faults[f"{operation}:{code}"] += 1
            return web.Response(
                status=400,
                body=json.dumps({"__type": code, "message": "injected by the test front"}),
                content_type="application/x-amz-json-1.1",
            )
        if operation == "PutRecords" and self.fail_put is not None:
            return await self._partial_put(request, body)
        return await self._forward(request, body)

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(
            request.method, f"{self.upstream}{request.path_qs}", data=body, headers=headers
        ) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=upstream.status, body=payload, headers=out)

    async def _partial_put(self, request: web.Request, body: bytes) -> web.Response:
        call = json.loads(body)
        assert self.fail_put is not None
        failing = [self.fail_put(r) for r in call["Records"]]
        kept = [r for r, fail in zip(call["Records"], failing, strict=True) if not fail]
        results: list[dict[str, Any]] = []
        if kept:
            forwarded = await self._forward(request, json.dumps({**call, "Records": kept}).encode())
            assert forwarded.body is not None
            results = json.loads(bytes(forwarded.body))["Records"]
        merged = []
        for fail in failing:
            if fail:
                with self._lock:
                    self.faults["PutRecords:record"] += 1
                merged.append(
                    {
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "Rate exceeded for shard (injected by the test front)",
                    }
                )
            else:
                merged.append(results.pop(0))
        return web.json_response(
            {"FailedRecordCount": sum(failing), "Records": merged},
            content_type="application/x-amz-json-1.1",
        )
