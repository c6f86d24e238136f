"""The daemon's lifecycle: startup, the main loop (reloads, watchdog, file watch), shutdown.

Reading order: `run` -> `_startup` -> wait for a stop signal -> `_shutdown`. Reloads happen one at
a time in `_reload_loop`: the whole new config is loaded and validated before anything running is
touched; an invalid one is logged, counted and reported in STATUS= while the old one keeps running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.base.files import open_dir_reason, private_dir
from daemon.config import ConfigError, LoadedConfig
from daemon.config.loader import file_stamp
from daemon.config.models import Config
from daemon.core.aws import AwsClients
from daemon.core.events import ConfigReloaded, EventBus
from daemon.core.http import Handler
from daemon.core.local_aws import LocalAws, attach_or_start
from daemon.core.logs import configure_logging, get_logger, set_context
from daemon.core.metrics import Registry, prometheus
from daemon.core.metrics.process import register_process_metrics
from daemon.core.storage import StateHealth
from daemon.outbox import Outbox
from daemon.outbox.core import outbox_path
from daemon.runtime.health import HealthSite
from daemon.runtime.notify import Notifier
from daemon.runtime.process import (
    AlreadyRunning,
    PidFile,
    RunFiles,
    dump_tasks,
    hard_exit,
    set_process_title,
    settle_memory,
)
from daemon.runtime.supervisor import Supervisor
from daemon.services import Services
from daemon.sns.ingest import Ingest
from daemon.telemetry.export import MetricsExport
from daemon.telemetry.log_shipper import LogShipper
from daemon.worker import Catalog

log = get_logger()

WATCH_INTERVAL = 0.5


class StartupError(Exception):
    """The daemon cannot start (a port in use, the local endpoint failing); exit code 1."""


class Daemon:
    """One awsd process."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        catalog: Catalog,
        environ: Mapping[str, str] = os.environ,
        local: LocalAws | None = None,
        process_title: bool = False,
    ) -> None:
        self.loaded = loaded
        self.catalog = catalog
        """The worker kinds (`daemon.workers.CATALOG`): which workers a config runs, what a
        reloaded config must satisfy."""
        self.environ = environ
        self.metrics = Registry()
        self.events = EventBus(self.metrics)
        self.supervisor = Supervisor(self.metrics)
        self.notifier = Notifier(environ)
        self.services: Services | None = None
        self.storage = StateHealth(
            self.metrics, self.events, state_dir=loaded.config.runtime.state_dir
        )
        """The health of the state on disk (process lifetime): every store reports to it."""
        self.outbox = Outbox(
            loaded.config.outbox,
            outbox_path(loaded.config),
            metrics=self.metrics,
            events=self.events,
            health=self.storage,
        )
        self.local: LocalAws | None = local
        """The embedded moto child: spawned early by `awsd run`, or started in `_startup`."""
        self.local_endpoint: str | None = None
        self.process_title = process_title
        """Whether the daemon is the whole process (`awsd run`): then it titles it `awsd: ENV`
        (not when embedded in another program, such as a test)."""
        self.state_dir = Path(loaded.config.runtime.state_dir).absolute()
        """The state directory it started with: the outbox's, and where the run files are (a
        reload that changes runtime.state_dir takes effect at the next start)."""
        self.pid_file = PidFile(self.state_dir)
        self.run_files = RunFiles(self.state_dir)
        self.state = "starting"
        self.started_at = time.time()
        self.reload_ok = 0
        self.reload_failed = 0
        self.last_reload_errors: list[str] = []
        self.last_reload_outcome = ""
        """"rejected" (an invalid config) or "failed" (a valid one that could not be applied)."""
        self._stop: asyncio.Event | None = None
        self._reload: asyncio.Event | None = None
        self._stop_signal: str | None = None
        self._preparing: asyncio.Task[None] | None = None
        self._reloads = self.metrics.counter("awsd_reloads_total", "Config reloads", ("result",))
        for result in ("ok", "failed"):
            self._reloads.labels(result=result)  # exported as 0 from the start, for alarms
        register_process_metrics(self.metrics)
        self.metrics_export = MetricsExport(self.metrics)
        """Flushes metrics to CloudWatch and EMF (process lifetime: outlives reloads)."""
        self.log_shipper = LogShipper(self.metrics)
        """Ships log events to CloudWatch Logs (process lifetime: outlives reloads)."""
        self.ingest = Ingest(lambda: self.services, port=self._health_port)
        """POST /publish and GET /publish/{id}: the token, the allow list, the rate."""
        self.routes: list[tuple[str, str, Handler]] = [
            *self.ingest.routes(),
            (
                "GET",
                "/metrics",
                prometheus.handler(self.metrics, lambda: self.config.metrics.prometheus.enabled),
            ),
        ]
        """Extra routes for the health server (method, path, handler); handlers reach the
        current services through `self.services`, which a reload replaces."""
        self.health = HealthSite(
            self.routes,
            status=self.status,
            not_ready=self.not_ready,
            degraded=self.storage.degraded,
            metrics=self.metrics,
        )
        """Where the health server listens (moved on reload, never left deaf)."""
        self.state_dir_open: str | None = None
        """Why other local users can reach into the state directory, when they can."""

    @property
    def config(self) -> Config:
        return self.loaded.config

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code."""
        self._stop, self._reload = asyncio.Event(), asyncio.Event()
        self._install_signals()
        if self.process_title:
            set_process_title(f"awsd: {self.config.env}")
        # Buffering log events for CloudWatch Logs starts now, so the startup lines are shipped.
        self.log_shipper.attach(self.config)
        log.info(
            "starting",
            version=__version__,
            pid=os.getpid(),
            config=str(self.loaded.path),
            loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
            python=sys.version.split()[0],
            overrides=[f"{path} <- {var}" for path, var in self.loaded.overrides] or None,
        )
        try:
            self._take_pid_file()
            await self._startup()
        except (StartupError, ConfigError) as exc:
            log.error("startup failed", error=str(exc))
            await self._shutdown()
            return 78 if isinstance(exc, ConfigError) else 1
        self.state = "running"
        settle_memory()
        self.notifier.ready(self.status_line())
        log.info(
            "ready",
            workers=len(self.supervisor.runners),
            startup_s=round(time.time() - self.started_at, 3),
            waiting_for=None if self.supervisor.gate.is_open() else self.supervisor.gate.reason,
        )
        background = [
            asyncio.create_task(self._reload_loop(), name="reload"),
            asyncio.create_task(self._watchdog_loop(), name="watchdog"),
            asyncio.create_task(self._watch_files(), name="config-watch"),
        ]
        await self._stop.wait()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self._shutdown()
        return 0

    async def _startup(self) -> None:
        self._prepare_state(self.config)
        early = self.local if self.config.aws.local and self.local_endpoint is None else None
        if early is not None:
            # `awsd run` spawned the local endpoint before its imports; its address is known, so
            # the clients (botocore models: CPU work) are built while it finishes booting.
            self.local_endpoint = early.endpoint
            self.services = self._build_services(self.config, None)
            try:
                await asyncio.gather(early.start(), self._warm_clients(self.services))
            except RuntimeError as exc:
                raise StartupError(str(exc)) from None
        else:
            await self._ensure_local_endpoint(self.config)
            self.services = self._build_services(self.config, None)
        await self._apply_telemetry(self.config, self.services)
        await self._start_health(self.config)
        self._write_endpoints()
        loop = asyncio.get_running_loop()
        try:
            specs = self.catalog.specs(self.config)
        except ValueError as exc:
            raise ConfigError.one(str(self.loaded.path), str(exc)) from None
        self._preparing = self._start_preparation(self.services)
        await self.supervisor.apply(
            specs,
            self.services,
            self.config.runtime,
            loop.time() + self.config.runtime.shutdown_timeout,
        )

    def _start_preparation(self, services: Services) -> asyncio.Task[None]:
        """The startup preparation (the reconciler's first pass, creating the queues and topics
        the others use) runs while the workers start: they hold their first run behind the
        supervisor's gate until it is done, so they find what it creates, while READY=1 and
        /readyz wait for the daemon itself only, never for AWS (a Pi booting offline is ready
        at once; the pass is bounded by `resources.startup_timeout`)."""
        gate = self.supervisor.gate
        gate.close("startup reconcile")

        async def prepare() -> None:
            try:
                await self.catalog.prepare(services)
            except Exception as exc:  # the workers start anyway, as after a timeout
                log.error("startup preparation failed; workers start now", exc_info=exc)
            gate.open()  # not when cancelled: the daemon is stopping, the workers with it

        return asyncio.create_task(prepare(), name="startup-preparation")

    async def _shutdown(self) -> None:
        self.state = "stopping"
        self.notifier.stopping()
        if self._preparing is not None and not self._preparing.done():
            # Creating resources is idempotent: the next start's pass finishes the job.
            self._preparing.cancel()
            await asyncio.gather(self._preparing, return_exceptions=True)
        loop = asyncio.get_running_loop()
        began = loop.time()
        total = self.config.runtime.shutdown_timeout
        deadline = began + total
        # The last resort if the loop itself is wedged: systemd would SIGKILL us anyway.
        hard_stop = threading.Timer(total + 2.0, hard_exit, args=(total,))
        hard_stop.daemon = True
        hard_stop.start()
        log.info("stopping", signal=self._stop_signal, timeout_s=total)
        flush_reserve = min(5.0, total * 0.25)
        await self.supervisor.stop_all(deadline - flush_reserve)
        # Workers have stopped: their final counts and log lines are in. Metrics first (their
        # flush may log), then the logs, each within its share of what is left.
        now = loop.time()
        await self.metrics_export.close(now + max(0.0, deadline - now) / 2)
        await self.log_shipper.close(deadline - 0.25)
        if self.services is not None:
            try:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await self.services.close()
            except TimeoutError:
                log.warning("closing services hit the shutdown deadline")
        await self.outbox.close()
        await self.health.stop()
        if self.local is not None:
            await self.local.stop()
        if self.pid_file.held:  # not when another daemon's pid file stopped this one
            self.run_files.remove()
            self.pid_file.release()
        hard_stop.cancel()
        self.notifier.close()
        log.info("stopped", duration_s=round(loop.time() - began, 3))

    # --- parts -----------------------------------------------------------------------------------

    def _take_pid_file(self) -> None:
        try:
            self.pid_file.acquire()
        except AlreadyRunning as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(
                f"cannot write {self.pid_file.path}: {exc.strerror or exc} (runtime.state_dir)"
            ) from None

    def _write_endpoints(self) -> None:
        """Say where this daemon listens, for the commands (`awsd status`, `awsd plan -e
        local`): after startup and after every reload (the ports may have moved)."""
        try:
            self.run_files.write_endpoints(
                health_url=self.health.url,
                aws_endpoint=self.local_endpoint,
                env=self.config.env,
                config=str(self.loaded.path.absolute()),
                started_at=self.started_at,
            )
        except OSError as exc:
            log.warning(
                "cannot write the endpoints file; commands fall back to the configured ports",
                path=str(self.state_dir),
                reason=exc.strerror or str(exc),
            )

    async def _warm_clients(self, services: Services) -> None:
        for service in sorted(self.catalog.aws_services(services.config)):
            await services.clients.client(service)
            await asyncio.sleep(0)  # let the endpoint's readiness check run in between

    async def _ensure_local_endpoint(self, config: Config) -> None:
        if not config.aws.local:
            return
        if self.local_endpoint is None:
            try:
                self.local_endpoint, self.local = await attach_or_start(
                    config.aws.local_port, self.environ, early=self.local
                )
            except RuntimeError as exc:
                raise StartupError(str(exc)) from None

    def _build_services(self, config: Config, previous: Services | None) -> Services:
        clients = previous.clients if previous and previous.config.aws == config.aws else None
        if clients is None:
            clients = AwsClients(
                config.aws,
                local_endpoint=self.local_endpoint if config.aws.local else None,
                metrics=self.metrics,
            )
        return Services(
            config,
            metrics=self.metrics,
            events=self.events,
            clients=clients,
            outbox=self.outbox,
            references=self.catalog.worker_references(config),
        )

    async def _apply_telemetry(self, config: Config, services: Services) -> None:
        await self.log_shipper.apply(config, services.clients)
        await self.metrics_export.apply(config, services.clients)

    def _prepare_state(self, config: Config) -> None:
        """The state directory 0700 (warned about when others can enter it), and the ingest
        token in it. Raises StartupError when the directory cannot be made."""
        state_dir = config.runtime.state_dir
        try:
            private_dir(state_dir)
            self.ingest.prepare(config)
        except OSError as exc:
            raise StartupError(
                f"the state directory {state_dir} cannot be used: {exc.strerror or exc}"
            ) from None
        self.storage.state_dir = state_dir
        self.state_dir_open = open_dir_reason(state_dir, group_search=bool(config.ingest.group))
        if self.state_dir_open:
            log.warning(
                "state directory is open to other local users",
                path=state_dir,
                reason=self.state_dir_open,
            )

    def _health_port(self) -> int | None:
        server = self.health.server
        return server.bound_port if server is not None else None

    async def _start_health(self, config: Config) -> None:
        try:
            await self.health.start(config.health)
        except OSError as exc:
            raise StartupError(
                f"health server cannot listen on {config.health.host}:{config.health.port}: "
                f"{exc.strerror or exc} (set health.port, or 0 to disable it)"
            ) from None

    # --- signals, reload, watchdog ---------------------------------------------------------------

    def _install_signals(self) -> None:
        # Installed before READY=1: a reload or stop that systemd sends right after READY must
        # not hit Python's default handlers (SIGHUP would kill the process).
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.request_reload, "SIGHUP")
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks, self.run_files.tasks)

    def request_stop(self, reason: str = "request") -> None:
        assert self._stop is not None
        if self._stop.is_set():
            if reason == "SIGINT":
                sys.stderr.write("awsd: second SIGINT, exiting now\n")
                os._exit(130)
            log.info("already stopping", signal=reason)
            return
        self._stop_signal = reason
        self._stop.set()

    def request_reload(self, reason: str = "request") -> None:
        assert self._reload is not None
        log.info("reload requested", trigger=reason)
        self._reload.set()

    async def _reload_loop(self) -> None:
        assert self._reload is not None
        while True:
            await self._reload.wait()
            self._reload.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Load and validate the config again; apply the difference or keep the old one.

        Whatever happens, the reload ends the same way: state "running", READY=1 with a fresh
        STATUS= (`systemctl reload` waits for it), and the reload loop waits for the next one."""
        self.state = "reloading"
        self.notifier.reloading()
        ok = await self._load_and_apply()
        self.state = "running"
        self.notifier.ready(self.status_line())
        return ok

    async def _load_and_apply(self) -> bool:
        try:
            loaded = await asyncio.to_thread(self.catalog.load, self.loaded.path, self.environ)
            specs = self.catalog.specs(loaded.config)
        except (ConfigError, ValueError) as exc:
            errors = [str(i) for i in exc.issues] if isinstance(exc, ConfigError) else [str(exc)]
            self._reload_failed("rejected", "reload rejected; the running config stays", errors)
            return False
        try:
            await self._apply(loaded, specs)
        except StartupError as exc:  # raised before anything running was touched
            self._reload_failed("failed", "reload failed; the running config stays", [str(exc)])
            return False
        except Exception as exc:  # noqa: BLE001 - a bug: logged with its traceback; stay reloadable
            self._reload_failed(
                "failed",
                "reload failed part-way; parts of the new config may be applied (SIGHUP retries)",
                [f"{type(exc).__name__}: {exc}"],
                exc,
            )
            return False
        return True

    def _reload_failed(
        self, outcome: str, event: str, errors: list[str], exc: BaseException | None = None
    ) -> None:
        self.reload_failed += 1
        self.last_reload_errors = errors
        self.last_reload_outcome = outcome
        self._reloads.labels(result="failed").inc()
        extra: dict[str, Any] = {"exc_info": exc} if exc is not None else {}
        log.error(event, errors=errors, running_config_version=self.loaded.version, **extra)

    async def _apply(self, loaded: LoadedConfig, specs: list[Any]) -> None:
        old, new = self.config, loaded.config
        # First what may fail (StartupError) while nothing running has been touched yet.
        await self._ensure_local_endpoint(new)
        if new.log != old.log:
            configure_logging(new.log)
        set_context(env=new.env, config_version=loaded.version)
        self._prepare_state(new)
        self.outbox.configure(new.outbox)
        previous = self.services
        services = self._build_services(new, previous)
        loop = asyncio.get_running_loop()
        changes = await self.supervisor.apply(
            specs, services, new.runtime, loop.time() + new.runtime.shutdown_timeout
        )
        self.services = services
        await self._apply_telemetry(new, services)
        if previous is not None and previous.clients is not services.clients:
            await previous.clients.close()
        await self.health.move(new.health)
        if self.process_title and new.env != old.env:
            set_process_title(f"awsd: {new.env}")
        self.loaded = loaded
        self._write_endpoints()
        self.events.publish(ConfigReloaded(source="daemon", version=loaded.version))
        self.reload_ok += 1
        self.last_reload_errors = []
        self._reloads.labels(result="ok").inc()
        settle_memory()
        log.info(
            "reloaded",
            added=changes.added,
            removed=changes.removed,
            changed=changes.changed,
            unchanged=len(changes.unchanged),
        )

    async def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval()
        if not interval:
            return
        loop = asyncio.get_running_loop()
        expected = loop.time()
        while True:
            lag = loop.time() - expected
            if lag > interval:
                log.warning("event loop was blocked", blocked_s=round(lag, 3))
            stuck = self.supervisor.stuck()
            if stuck:
                log.error(
                    "workers made no progress; not feeding the systemd watchdog", workers=stuck
                )
            else:
                self.notifier.watchdog()
            expected = loop.time() + interval
            await asyncio.sleep(interval)

    async def _watch_files(self) -> None:
        loop = asyncio.get_running_loop()
        watched = self.loaded
        seen = watched.stamps  # taken before the files were read: no change slips through
        changed_at: float | None = None
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if self.loaded is not watched:  # reloaded: compare with what that load read
                watched = self.loaded
                seen, changed_at = watched.stamps, None
            now = tuple(file_stamp(f) for f in watched.files)
            if not self.config.runtime.watch_config:
                seen, changed_at = now, None
                continue
            if now != seen:
                seen, changed_at = now, loop.time()
            elif (
                changed_at is not None
                and loop.time() - changed_at >= self.config.runtime.watch_debounce
            ):
                changed_at = None
                self.request_reload("file change")

    # --- status ----------------------------------------------------------------------------------

    def not_ready(self) -> list[str]:
        """What /readyz waits for: the daemon's own startup, then every worker running."""
        if self.state == "starting":
            return ["(daemon starting)"]
        return self.supervisor.not_ready()

    def status_line(self) -> str:
        total = len(self.supervisor.runners)
        running = total - len(self.supervisor.not_ready())
        line = (
            f"{running}/{total} workers running, {len(self.supervisor.failed())} failed; "
            f"config {self.loaded.version}"
        )
        if not self.supervisor.gate.is_open():
            line += f"; workers wait for the {self.supervisor.gate.reason}"
        if self.last_reload_errors:
            line += (
                f"; last reload {self.last_reload_outcome} ({len(self.last_reload_errors)} errors)"
            )
        return line

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "env": self.config.env,
            "state": self.state,
            "startup": "done" if self.supervisor.gate.is_open() else self.supervisor.gate.reason,
            "config_path": str(self.loaded.path),
            "config_version": self.loaded.version,
            "uptime_s": round(time.time() - self.started_at, 3),
            "workers": self.supervisor.health(),
            "not_ready": self.supervisor.not_ready(),
            "reloads": {
                "ok": self.reload_ok,
                "failed": self.reload_failed,
                "last_errors": self.last_reload_errors,
            },
            "health": {"listening": self.health.address},
            "state_dir": {
                **self.storage.describe(),
                "path": str(self.state_dir),
                "open_to_others": self.state_dir_open,
            },
            "aws": {
                "region": self.services.clients.region if self.services else None,
                "local_endpoint": self.local_endpoint,
            },
            "events": self.events.describe(),
            "metrics": self.metrics_export.describe(),
            "cloudwatch_logs": self.log_shipper.describe(),
        }
