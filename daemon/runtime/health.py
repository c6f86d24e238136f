"""The loopback HTTP server: /healthz, /readyz, /status, and routes other parts add.

/healthz answers 200 while the event loop runs (if it answers at all, the loop is alive).
/readyz answers 200 once every worker runs, else 503 listing the ones that do not.
/status is the daemon's self-description as JSON (workers, restarts, last errors, config version).
Other components add routes before start (/metrics, POST /publish).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from daemon.config.models import local_url
from daemon.core.http import Handler
from daemon.core.logs import get_logger

log = get_logger()


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        status: Callable[[], dict[str, Any]],
        not_ready: Callable[[], list[str]],
    ) -> None:
        self.host = host
        self.port = port
        self._status = status
        self._not_ready = not_ready
        self._routes: list[tuple[str, str, Handler]] = []
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self._routes.append((method, path, handler))

    async def start(self) -> None:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status_route)
        for method, path, handler in self._routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("health server listening", host=self.host, port=self.bound_port)

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
        return web.json_response({"status": "ready"})

    async def _status_route(self, _: web.Request) -> web.Response:
        return web.json_response(self._status(), dumps=_dumps)


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
    ) -> None:
        self.routes = routes
        self._status = status
        self._not_ready = not_ready
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

    async def start(self, host: str, port: int) -> None:
        """Listen (port 0: stay off); OSError when it cannot."""
        if port:
            self.server = await self._listen(host, port)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def _listen(self, host: str, port: int) -> HealthServer:
        """A started health server with every route; OSError when it cannot listen."""
        server = HealthServer(host, port, status=self._status, not_ready=self._not_ready)
        for method, path, handler in self.routes:
            server.add_route(method, path, handler)
        try:
            await server.start()
        except OSError:
            await server.stop()
            raise
        return server

    async def move(self, host: str, port: int) -> None:
        """Bring the server to `host:port` (port 0: off)."""
        old = self.server
        unchanged = (old.host, old.port) == (host, port) if old is not None else not port
        if unchanged:
            return
        freed: tuple[str, int] | None = None
        if old is not None and (not port or old.port == port):
            # Turned off, or only the address changes: the old server may hold the port itself.
            await old.stop()
            self.server, freed = None, (old.host, old.port)
        if not port:
            log.info("health server stopped (health.port = 0)")
            return
        try:
            new = await self._listen(host, port)
        except OSError as exc:
            if freed is not None:
                self.server = await self._listen_again(*freed)
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

    async def _listen_again(self, host: str, port: int) -> HealthServer | None:
        try:
            return await self._listen(host, port)
        except OSError as exc:
            log.error(
                "health server cannot listen on its old address either; it is off",
                host=host,
                port=port,
                reason=exc.strerror or str(exc),
            )
            return None
