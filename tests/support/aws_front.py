"""A real HTTP front for the moto server that speaks the AWS protocols: it forwards every call,
records it, and answers the calls a rule claims the way AWS would.

moto never throttles, never fails part of a batch, has no QueueDeletedRecently, its shard
iterators never expire and it answers at once; AWS does all of these. `FaultProxy` breaks the
TCP connection; this front breaks the protocol: an AWS error in the request's own protocol (a
JSON `__type` body for JSON services, `<ErrorResponse>` XML for query ones), a stub success, a
partial failure of a batch, or a delay. The daemon's real botocore stack parses exactly what AWS
would send; nothing in the daemon is mocked.

Rules match by service (the SigV4 signing name: `sqs`, `kinesis`, `monitoring`, `logs`...)
and/or operation, claim `times` calls or every one (`times=None`), and the first answering rule
that claims a call answers it (delays add up and let the call go on). Every call is recorded
(`calls()`: protocol, Content-Encoding, body size as sent and decompressed, the request's
parameters, what the front did),
and `max_in_flight` keeps the most calls in flight at once per service (`"sqs"`) and per
operation (`"sqs:ReceiveMessage"`).

It runs its own event loop in a thread (like `FaultProxy`), so sync tests driving a spawned
daemon and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from tests.support.proxy import LoopThread

Protocol = Literal["json", "query", "rest"]
RecordCheck = Callable[[dict[str, Any]], bool]

# aiohttp hands the handler the body decompressed: it goes on without its encoding and length.
REQUEST_DROP = {"host", "content-length", "content-encoding", "transfer-encoding", "connection"}
RESPONSE_DROP = {"content-length", "transfer-encoding", "connection"}
REQUEST_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Call:
    """One request as it reached the front, and what the front did with it."""

    service: str
    operation: str
    protocol: Protocol
    content_encoding: str
    body_bytes: int
    """Size of the body as sent (compressed when it was)."""
    raw_bytes: int
    """Size once decompressed."""
    status: int
    """The front's own answer (the error's status, 200 for a stub); 0 when moto answered."""
    error: str = ""
    """The error code the front answered with."""
    failed_records: int = 0
    """Records of a batch the front failed (the others went on to moto)."""
    request: dict[str, Any] = field(default_factory=dict)
    """The request's parameters: the JSON body (JSON protocols), the form or query string with
    one value per name (query protocol); empty for REST calls."""


@dataclass(frozen=True)
class AwsError:
    code: str
    status: int
    message: str
    query_code: str | None
    """For JSON services that keep their query-protocol codes (SQS): `x-amzn-query-error`."""


@dataclass(frozen=True)
class Stub:
    """A success without asking moto (it takes seconds for some big requests): empty, or for
    JSON protocols the body `answer` makes of the request's JSON."""

    answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class FailRecords:
    check: RecordCheck
    code: str


Action = AwsError | Stub | Delay | FailRecords


@dataclass
class Rule:
    action: Action
    operation: str | None
    service: str | None
    times: int | None
    """How many more calls this rule claims; None: every one."""
    claimed: int = field(default=0)

    def claims(self, service: str, operation: str) -> bool:
        if self.operation not in (None, operation) or self.service not in (None, service):
            return False
        if self.times is not None and self.claimed >= self.times:
            return False
        self.claimed += 1
        return True


class AwsFront:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self._calls: list[Call] = []
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread = LoopThread()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AwsFront:
        self._thread.start()
        self._thread.run(self._start())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._thread.run(self._stop())
        self._thread.close()

    # --- rules ------------------------------------------------------------------------------------

    def fail(
        self,
        operation: str | None,
        code: str,
        *,
        service: str | None = None,
        status: int = 400,
        message: str | None = None,
        query_code: str | None = None,
        times: int | None = 1,
    ) -> Rule:
        """Answer `times` matching calls (None: all) with this AWS error."""
        if message is None:
            message = "Rate exceeded" if "Throttl" in code else "injected by the test"
        return self._add(AwsError(code, status, message, query_code), operation, service, times)

    def stub(
        self,
        operation: str,
        *,
        service: str | None = None,
        times: int | None = 1,
        answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Rule:
        """Answer `times` matching calls (None: all) with a success, without moto: empty, or
        (JSON protocols) `answer(request body)`."""
        return self._add(Stub(answer), operation, service, times)

    def delay(
        self,
        seconds: float,
        *,
        operation: str | None = None,
        service: str | None = None,
        times: int | None = None,
    ) -> Rule:
        """Hold matching calls (all unless `times`) this long before they go on."""
        return self._add(Delay(seconds), operation, service, times)

    def fail_records(
        self,
        check: RecordCheck,
        *,
        operation: str = "PutRecords",
        code: str = "ProvisionedThroughputExceededException",
        times: int | None = None,
    ) -> Rule:
        """In matching batch calls (all unless `times`), fail the entries `check` returns True
        for (it sees each entry as sent) with `code`; the others go on to moto."""
        if operation not in BATCHES:
            raise ValueError(f"no partial failures for {operation}; known: {sorted(BATCHES)}")
        return self._add(FailRecords(check, code), operation, None, times)

    def _add(
        self, action: Action, operation: str | None, service: str | None, times: int | None
    ) -> Rule:
        rule = Rule(action, operation, service, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    # --- what happened ----------------------------------------------------------------------------

    def calls(self, operation: str | None = None, *, service: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self._calls
                if operation in (None, c.operation) and service in (None, c.service)
            ]

    @property
    def max_in_flight(self) -> dict[str, int]:
        """The most calls in flight at once, per service and per `service:Operation` (delays
        included)."""
        with self._lock:
            return dict(self._max_in_flight)

    # --- the server -------------------------------------------------------------------------------

    async def _start(self) -> None:
        # Responses go back as moto sent them, encoding included.
        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        service, operation, protocol = identify(request, raw)
        delays, answer = self._claim(service, operation)
        status, error, failing = 0, "", []
        if isinstance(answer, AwsError):
            status, error = answer.status, answer.code
        elif isinstance(answer, Stub):
            status = 200
        params = parameters(request, raw, protocol)
        if isinstance(answer, FailRecords):
            failing = [answer.check(entry) for entry in params[BATCHES[operation]]]
        encoding = request.headers.get("Content-Encoding", "")
        sent = int(request.headers.get("Content-Length", len(raw)))
        call = Call(
            service,
            operation,
            protocol,
            encoding,
            sent,
            len(raw),
            status,
            error,
            sum(failing),
            params,
        )
        with self._lock:
            self._calls.append(call)
        with self._gauge(service), self._gauge(f"{service}:{operation}"):
            for delay in delays:
                await asyncio.sleep(delay.seconds)
            if isinstance(answer, AwsError):
                return error_response(answer, protocol, request)
            if isinstance(answer, Stub):
                if answer.answer is not None and protocol == "json":
                    body = json.dumps(answer.answer(json.loads(raw)))
                    return web.Response(text=body, content_type=request.content_type)
                return stub_response(operation, protocol, request)
            if isinstance(answer, FailRecords) and any(failing):
                return await self._partial(request, operation, params, answer.code, failing)
            return await self._forward(request, raw)

    def _claim(
        self, service: str, operation: str
    ) -> tuple[list[Delay], AwsError | Stub | FailRecords | None]:
        """The delays that claim this call, and the first other rule that does (or None)."""
        delays: list[Delay] = []
        with self._lock:
            for rule in self.rules:
                action = rule.action
                if isinstance(action, Delay):
                    if rule.claims(service, operation):
                        delays.append(action)
                elif rule.claims(service, operation):
                    return delays, action
        return delays, None

    @contextmanager
    def _gauge(self, key: str) -> Iterator[None]:
        with self._lock:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            peak = max(self._max_in_flight.get(key, 0), self._in_flight[key])
            self._max_in_flight[key] = peak
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key] -= 1

    async def _forward(self, request: web.Request, raw: bytes) -> web.Response:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in REQUEST_DROP}
        async with self._http.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=raw
        ) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in RESPONSE_DROP}
            return web.Response(status=upstream.status, body=payload, headers=out)

    async def _partial(
        self,
        request: web.Request,
        operation: str,
        call: dict[str, Any],
        code: str,
        failing: list[bool],
    ) -> web.Response:
        """A batch call with some entries failed: the rest go to moto, and the answers are merged
        the way AWS answers (PutRecords: in the request's order; SQS batches: `Failed` entries
        by Id next to moto's `Successful` ones)."""
        field_name = BATCHES[operation]
        kept = [r for r, fail in zip(call[field_name], failing, strict=True) if not fail]
        answer: dict[str, Any] = {}
        if kept:
            forwarded = await self._forward(
                request, json.dumps({**call, field_name: kept}).encode()
            )
            assert isinstance(forwarded.body, bytes)
            answer = json.loads(forwarded.body)
        if operation == "PutRecords":
            results = answer.get("Records", [])
            failure = {"ErrorCode": code, "ErrorMessage": "Rate exceeded for shard (injected)"}
            merged = [failure if fail else results.pop(0) for fail in failing]
            body = {"FailedRecordCount": sum(failing), "Records": merged}
        else:
            failed = [
                {"Id": entry["Id"], "SenderFault": False, "Code": code, "Message": "injected"}
                for entry, fail in zip(call[field_name], failing, strict=True)
                if fail
            ]
            body = {
                "Successful": answer.get("Successful", []),
                "Failed": answer.get("Failed", []) + failed,
            }
        return web.json_response(body, content_type=request.content_type)


BATCHES = {"PutRecords": "Records", "DeleteMessageBatch": "Entries"}
"""Batch operations `fail_records` knows (JSON protocol), with the request field holding the
entries."""


def parameters(request: web.Request, raw: bytes, protocol: Protocol) -> dict[str, Any]:
    """A request's parameters as `Call.request` keeps them."""
    if protocol == "json":
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    if protocol == "query":
        form = parse_qs(raw.decode("utf-8", errors="replace")) if raw else {}
        form = form or parse_qs(request.query_string)
        return {name: values[0] for name, values in form.items()}
    return {}


def identify(request: web.Request, raw: bytes) -> tuple[str, str, Protocol]:
    """(service, operation, protocol) of a signed AWS request."""
    auth = request.headers.get("Authorization", "")
    # SigV4: Credential=KEY/DATE/REGION/SERVICE/aws4_request
    service = auth.split("Credential=", 1)[1].split("/")[3] if "Credential=" in auth else "?"
    target = request.headers.get("X-Amz-Target")
    if target:
        return service, target.rsplit(".", 1)[-1], "json"
    form = parse_qs(raw.decode("utf-8", errors="replace")) if raw else {}
    action = form.get("Action") or parse_qs(request.query_string).get("Action")
    if action:
        return service, action[0], "query"
    return service, f"{request.method} {request.path}", "rest"


def error_response(error: AwsError, protocol: Protocol, request: web.Request) -> web.Response:
    headers = {"x-amzn-RequestId": REQUEST_ID}
    if protocol == "json":
        if error.query_code:
            headers["x-amzn-query-error"] = f"{error.query_code};Sender"
        return web.Response(
            status=error.status,
            text=json.dumps({"__type": error.code, "message": error.message}),
            content_type=request.content_type,
            headers=headers,
        )
    inner = f"<Code>{error.code}</Code><Message>{error.message}</Message>"
    if protocol == "query":
        kind = "Receiver" if error.status >= 500 else "Sender"
        text = (
            f"<ErrorResponse><Error><Type>{kind}</Type>{inner}</Error>"
            f"<RequestId>{REQUEST_ID}</RequestId></ErrorResponse>"
        )
    else:
        text = f"<Error>{inner}<RequestId>{REQUEST_ID}</RequestId></Error>"
    return web.Response(status=error.status, text=text, content_type="text/xml", headers=headers)


def stub_response(operation: str, protocol: Protocol, request: web.Request) -> web.Response:
    if protocol == "json":
        return web.Response(text="{}", content_type=request.content_type)
    if protocol == "query":
        text = (
            f"<{operation}Response><ResponseMetadata><RequestId>{REQUEST_ID}</RequestId>"
            f"</ResponseMetadata></{operation}Response>"
        )
        return web.Response(text=text, content_type="text/xml")
    return web.Response()
