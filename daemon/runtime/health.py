"""The loopback HTTP server: /healthz, /readyz, /status, and routes other parts add.

/healthz answers 200 while the event loop runs (if it answers at all, the loop is alive).
/readyz answers 200 once every worker runs and every state store writes; else 503, listing the
workers that do not run (`not ready`) or the stores that cannot write (`degraded`: a full state
directory names the store and the bytes free).
/status is the daemon's self-description as JSON (workers, restarts, last errors, config
version), redacted like a log line: no URL in it shows a password or a secret query value.
Other components add routes before start (/metrics, POST /publish).

The listener is bounded (`listener.py`): a connection cap that leaves the AWS clients their
file descriptors, an idle timeout that also ends stalled headers, client errors summarised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from daemon.base.redact import redact
from daemon.config.models import HealthConfig, local_url
from daemon.core.http import Handler
from daemon.core.logs import get_logger
from daemon.core.metrics import Registry
from daemon.runtime.listener import (
    ClientErrors,
    ConnectionGuard,
    GuardedSite,
    QuietLogger,
    error_middleware,
)

log = get_logger()


class HealthServer:
    def __init__(
        self,
        cfg: HealthConfig,
        *,
        status: Callable[[], dict[str, Any]],
        not_ready: Callable[[], list[str]],
        degraded: Callable[[], dict[str, str]],
        metrics: Registry,
        errors: ClientErrors,
    ) -> None:
        self.cfg = cfg
        self.host = cfg.host
        self.port = cfg.port
        self._status = status
        self._not_ready = not_ready
        self._degraded = degraded
        self._metrics = metrics
        self._errors = errors
        self._routes: list[tuple[str, str, Handler]] = []
        self._runner: web.AppRunner | None = None
        self.guard: ConnectionGuard | None = None
        self.bound_port: int | None = None

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self._routes.append((method, path, handler))

    async def start(self) -> None:
        guard = self.guard = ConnectionGuard(self.cfg.max_connections, self._metrics)
        app = web.Application(
            client_max_size=2 * 1024 * 1024,
            middlewares=[guard.middleware(), error_middleware(self._errors)],
        )
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status_route)
        for method, path, handler in self._routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.cfg.idle_timeout,
            logger=QuietLogger(self._errors),
            shutdown_timeout=1.0,
        )
        await self._runner.setup()
        site = GuardedSite(self._runner, self.host, self.port, guard=guard)
        await site.start()
        self.bound_port = site.port
        log.info(
            "health server listening",
            host=self.host,
            port=self.bound_port,
            max_connections=guard.cap,
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        waiting = self._not_ready()
        if waiting:
            return web.json_response({"status": "not ready", "workers": waiting}, status=503)
        degraded = self._degraded()
        if degraded:
            return web.json_response({"status": "degraded", "stores": degraded}, status=503)
        return web.json_response({"status": "ready"})

    async def _status_route(self, _: web.Request) -> web.Response:
        return web.json_response(redact(self._status()), dumps=_dumps)


def _dumps(value: Any) -> str:
    import json  # noqa: PLC0415

    return json.dumps(value, indent=2, default=str)


class HealthSite:
    """Where the health server listens, for the daemon's lifetime: started at startup, moved on
    reload, stopped at the end. The old server keeps listening until the new one does, so a
    port that is taken leaves /healthz, /status and /metrics where they were (logged as a
    warning), and a later reload tries again."""

    def __init__(
        self,
        routes: list[tuple[str, str, Handler]],
        *,
        status: Callable[[], dict[str, Any]],
        not_ready: Callable[[], list[str]],
        degraded: Callable[[], dict[str, str]],
        metrics: Registry,
    ) -> None:
        self.routes = routes
        self._status = status
        self._not_ready = not_ready
        self._degraded = degraded
        self._metrics = metrics
        self.errors = ClientErrors(metrics)
        """Client errors of every listener this site runs, summarised per minute."""
        self.server: HealthServer | None = None

    @property
    def address(self) -> str | None:
        """`host:port` it listens on, or None when off."""
        server = self.server
        return f"{server.host}:{server.bound_port}" if server else None

    @property
    def url(self) -> str | None:
        """Where a client on this machine reaches it (`http://127.0.0.1:9180`), or None."""
        server = self.server
        return local_url(server.host, server.bound_port or server.port) if server else None

    async def start(self, cfg: HealthConfig) -> None:
        """Listen (port 0: stay off); OSError when it cannot."""
        if cfg.port:
            self.server = await self._listen(cfg)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()
        self.errors.close()

    async def _listen(self, cfg: HealthConfig) -> HealthServer:
        """A started health server with every route; OSError when it cannot listen."""
        server = HealthServer(
            cfg,
            status=self._status,
            not_ready=self._not_ready,
            degraded=self._degraded,
            metrics=self._metrics,
            errors=self.errors,
        )
        for method, path, handler in self.routes:
            server.add_route(method, path, handler)
        try:
            await server.start()
        except OSError:
            await server.stop()
            raise
        return server

    async def move(self, cfg: HealthConfig) -> None:
        """Bring the server to `cfg` (port 0: off); a change of its limits restarts it too."""
        old = self.server
        host, port = cfg.host, cfg.port
        unchanged = old.cfg == cfg if old is not None else not port
        if unchanged:
            return
        freed: HealthConfig | None = None
        if old is not None and (not port or old.port == port):
            # Turned off, or the same port: the old server may hold the port itself.
            await old.stop()
            self.server, freed = None, old.cfg
        if not port:
            log.info("health server stopped (health.port = 0)")
            return
        try:
            new = await self._listen(cfg)
        except OSError as exc:
            if freed is not None:
                self.server = await self._listen_again(freed)
            log.warning(
                "health server cannot move; it stays where it was",
                host=host,
                port=port,
                reason=exc.strerror or str(exc),
                listening=self.address,
            )
            return
        if freed is None and old is not None:
            await old.stop()
        self.server = new

    async def _listen_again(self, cfg: HealthConfig) -> HealthServer | None:
        try:
            return await self._listen(cfg)
        except OSError as exc:
            log.error(
                "health server cannot listen on its old address either; it is off",
                host=cfg.host,
                port=cfg.port,
                reason=exc.strerror or str(exc),
            )
            return None
