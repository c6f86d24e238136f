"""How the loopback HTTP listener treats its clients: bounded, timed, and quiet about their errors.

A local process can open connections and never send a request, dribble headers, abort a body
half-way, or send garbage; none of it may cost the daemon its file descriptors (which its AWS
connections need), its log, or its answers to /healthz. So:

- `ConnectionGuard` caps open connections per listener (`health.max_connections`, and never more
  than a quarter of the process's file-descriptor limit, the rest being the AWS clients'). At the
  cap, a new connection evicts the oldest idle one (no request being handled), or is closed
  at once when all are busy; evictions and refusals are counted;
- idle connections close after `health.idle_timeout`: aiohttp's keep-alive timer runs from the
  connection's start and after each response, and closes a connection whose next request's
  headers are not complete by then (a stalled or dribbling client); request bodies have their
  own deadline (`health.body_timeout`, applied by the routes that read one);
- `ClientErrors` summarises 4xx answers and malformed requests: the first of each kind in a
  minute is logged at once, the rest as one count per kind and minute, never a traceback.
  An unexpected exception in a route is a bug: answered 500 as JSON, logged with its traceback
  once per exception type and minute.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from daemon.core.logs import get_logger
from daemon.core.metrics import Registry

log = get_logger()

SUMMARY_EVERY = 60.0


class ClientErrors:
    """Counts of client errors by kind, logged at most once per kind and minute."""

    def __init__(self, metrics: Registry) -> None:
        self._counts: dict[str, int] = {}
        self._first: dict[str, float] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._metric = metrics.counter(
            "awsd_http_client_errors_total",
            "Requests to the health listener answered 4xx, aborted, or malformed, by kind",
            ("kind",),
        )

    def note(self, kind: str, **detail: Any) -> None:
        self._metric.labels(kind=kind).inc()
        now = time.monotonic()
        if kind not in self._first or now - self._first[kind] >= SUMMARY_EVERY:
            self._first[kind] = now
            log.warning("client error on the health listener", kind=kind, **detail)
            return
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(SUMMARY_EVERY, self.flush)

    def flush(self) -> None:
        self._flush = None
        if self._counts:
            counts, self._counts = self._counts, {}
            log.warning("client errors on the health listener in the last minute", counts=counts)

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self.flush()


class QuietLogger(logging.Logger):
    """aiohttp's server logger for the listener: a malformed request or a client that went away
    is a client error to summarise, not a traceback to log."""

    def __init__(self, errors: ClientErrors) -> None:
        super().__init__("aiohttp.server.awsd")
        # Anything else it says goes the usual way (the daemon's log pipeline).
        self.parent = logging.getLogger("aiohttp.server")
        self.errors = errors

    def exception(self, msg: object, *args: object, exc_info: Any = True, **_: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        self.errors.note(_kind(exc), error=_short(exc))

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.exception(msg, *args, **kwargs)


def _kind(exc: BaseException | None) -> str:
    if exc is None:
        return "malformed request"
    if isinstance(exc, ConnectionError):
        return "client went away"
    return f"malformed request ({type(exc).__name__})"


def _short(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def error_middleware(errors: ClientErrors) -> Any:
    """Counts 4xx answers, turns unexpected exceptions into a JSON 500 (traceback logged once
    per type and minute), so no route can flood the log or answer an HTML error page."""
    bugs: dict[str, float] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if 400 <= exc.status < 500:
                errors.note(f"{exc.status} {exc.reason}", path=request.path[:100])
            raise
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug in a route: reported once a minute, answered 500
            name = type(exc).__name__
            now = time.monotonic()
            if now - bugs.get(name, -SUMMARY_EVERY) >= SUMMARY_EVERY:
                bugs[name] = now
                log.error("health listener route failed", path=request.path, exc_info=exc)
            return web.json_response({"error": f"internal error ({name})"}, status=500)
        if 400 <= response.status < 500:
            errors.note(f"{response.status} {response.reason}", path=request.path[:100])
        return response

    return middleware


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol, watched by the guard."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.opened = time.monotonic()
        self.busy = 0
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if not self.guard.admit(self):
            self.transport.abort()
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self.admitted:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class ConnectionGuard:
    """The connection cap of one listener (see the module docstring)."""

    def __init__(self, cap: int, metrics: Registry) -> None:
        self.factory: Callable[[], asyncio.Protocol] | None = None
        """aiohttp's protocol factory (`AppRunner.server`), set once the runner is set up."""
        self.cap = max(1, min(cap, fd_budget()))
        self.open: dict[asyncio.Transport, _Connection] = {}
        self._dropped = metrics.counter(
            "awsd_http_connections_dropped_total",
            "Connections the health listener closed at its cap (evicted idle, refused busy)",
            ("reason",),
        )
        self._gauge = metrics.gauge(
            "awsd_http_connections", "Connections open on the health listener"
        ).labels()
        self._noted = 0.0

    def __call__(self) -> asyncio.Protocol:
        assert self.factory is not None
        return _Connection(self, self.factory())

    def admit(self, conn: _Connection) -> bool:
        if len(self.open) >= self.cap:
            idle = [c for c in self.open.values() if not c.busy]
            if not idle:
                self._drop("refused", conn)
                return False
            oldest = min(idle, key=lambda c: c.opened)
            self._drop("evicted", oldest)
            self.forget(oldest)
            if oldest.transport is not None:
                oldest.transport.abort()  # connection_lost follows, on the next loop turn
        assert conn.transport is not None
        self.open[conn.transport] = conn
        self._gauge.set(len(self.open))
        return True

    def forget(self, conn: _Connection) -> None:
        if conn.transport is not None and self.open.get(conn.transport) is conn:
            del self.open[conn.transport]
            self._gauge.set(len(self.open))

    def _drop(self, reason: str, conn: _Connection) -> None:
        self._dropped.labels(reason=reason).inc()
        now = time.monotonic()
        if now - self._noted >= SUMMARY_EVERY:
            self._noted = now
            log.warning(
                "health listener at its connection cap",
                cap=self.cap,
                action=reason,
                hint="idle connections close after health.idle_timeout",
            )

    def middleware(self) -> Any:
        """Marks a connection busy while one of its requests is being handled (never evicted)."""

        @web.middleware
        async def busy(request: web.Request, handler: Any) -> web.StreamResponse:
            transport = request.transport
            conn = self.open.get(transport) if transport is not None else None
            if conn is not None:
                conn.busy += 1
            try:
                response: web.StreamResponse = await handler(request)
                return response
            finally:
                if conn is not None:
                    conn.busy -= 1

        return busy


def fd_budget() -> int:
    """A quarter of the soft file-descriptor limit: what one listener may hold at most."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(4, soft // 4)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a `ConnectionGuard`."""

    __slots__ = ("_bound_port", "_guard", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner, backlog=128)
        self._host, self._port = host, port
        assert runner.server is not None
        guard.factory = runner.server
        self._guard = guard
        self._bound_port: int | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        return self._bound_port or self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
