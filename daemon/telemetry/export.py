"""The metrics flusher: every `metrics.flush_interval`, one snapshot to CloudWatch and/or EMF.

Why a process-lifetime service started by the daemon and not a supervised worker: its last flush
must come *after* every worker has stopped, so the final counts of a shutdown (messages drained,
records checkpointed) are sent too; the supervisor stops all workers together, so a worker could
not wait for its siblings. It also outlives reloads (counters never reset, the buffer of unsent
data points is kept) and takes a changed `[metrics]` section or new AWS clients in `apply`.

It never delays anything else: a flush that cannot reach CloudWatch gives up after
`metrics.cloudwatch.retry_budget` seconds and keeps the data points (bounded) for the next one,
and at shutdown it gets whatever time the deadline leaves, then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from daemon.config.errors import ConfigError
from daemon.config.metrics import MetricsConfig
from daemon.config.models import Config
from daemon.core import identity
from daemon.core.aws import AwsClients
from daemon.core.logs import get_logger, unfiltered_logger
from daemon.core.metrics.registry import Registry
from daemon.core.metrics.snapshot import Selector, Snapshots
from daemon.telemetry import emf
from daemon.telemetry.cloudwatch import CloudWatchExporter, resolution_for

log = get_logger()

FINAL_ATTEMPTS = 3
"""Tries per call in the shutdown flush: enough for a throttle, short when the endpoint is gone."""

EmfWriter = Callable[[dict[str, Any]], None]


def write_emf(doc: dict[str, Any]) -> None:
    """Write one EMF document through the logs pipeline, whatever the log level."""
    unfiltered_logger().info(emf.EVENT, **doc)


class MetricsExport:
    """Flushes the registry to CloudWatch PutMetricData and EMF on a schedule and at shutdown."""

    def __init__(self, registry: Registry, *, write: EmfWriter = write_emf) -> None:
        self.registry = registry
        self.snapshots = Snapshots(registry)
        self.cloudwatch = CloudWatchExporter(registry)
        self._write = write
        self._cfg: MetricsConfig | None = None
        self._env = ""
        self._ask_imds = True
        self._clients: AwsClients | None = None
        self._select = Selector()
        self._high = Selector(())
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self.flushes = 0
        self.last_flush_at: float | None = None
        self._emf_sent = registry.counter(
            "awsd_metrics_sent_total", "Metric data points sent, by exporter", ("exporter",)
        ).labels(exporter="emf")

    @property
    def active(self) -> bool:
        cfg = self._cfg
        return cfg is not None and (cfg.cloudwatch.enabled or cfg.emf.enabled)

    async def apply(self, config: Config, clients: AwsClients) -> None:
        """Take a (new) configuration and AWS clients; start or stop the schedule."""
        cfg = config.metrics
        was_cloudwatch = self._cfg is not None and self._cfg.cloudwatch.enabled
        self._cfg, self._env, self._clients = cfg, config.env, clients
        self._ask_imds = not config.aws.local
        self._select = Selector(cfg.include, cfg.exclude)
        self._high = Selector(cfg.high_resolution, ())
        self.cloudwatch.buffer_size = cfg.cloudwatch.buffer_size
        self.registry.track_distributions(self.active and cfg.histograms == "values")
        if was_cloudwatch and not cfg.cloudwatch.enabled:
            self.cloudwatch.drop("disabled", len(self.cloudwatch.buffer))
            self.cloudwatch.buffer.clear()
        if self.active and self._task is None:
            self._changed = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="metrics-export")
            log.info(
                "metrics export started",
                cloudwatch=cfg.cloudwatch.enabled,
                emf=cfg.emf.enabled,
                flush_interval_s=cfg.flush_interval,
                namespace=cfg.namespace,
            )
        elif not self.active and self._task is not None:
            await self._cancel()
        elif self._changed is not None:
            self._changed.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._changed is not None
        last = loop.time()
        while True:
            assert self._cfg is not None
            wait = last + self._cfg.flush_interval - loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                if self._changed.is_set():
                    # A reload: recompute the wait with the new interval.
                    self._changed.clear()
                    continue
            last = loop.time()
            try:
                await self.flush()
            except ConfigError as exc:  # no region: the operator's to fix, no traceback
                log.error("metrics flush failed", error=str(exc))
            except Exception:  # a failed flush must not end the schedule
                log.exception("metrics flush failed")

    async def flush(self, budget: float | None = None, attempts: int | None = None) -> None:
        """One snapshot to each enabled exporter; CloudWatch gets at most `budget` seconds
        (and `attempts` tries per call)."""
        cfg, clients = self._cfg, self._clients
        if cfg is None or clients is None or not self.active:
            return
        who = await identity.resolve(
            self._env,
            ask_imds=self._ask_imds and identity.needs_instance_id(*cfg.dimensions.values()),
        )
        dimensions = {name: who.expand(value) for name, value in cfg.dimensions.items()}
        points = self.snapshots.take(self._select)
        now = time.time()
        resolution = resolution_for(self._high, cfg.storage_resolution)
        values = cfg.histograms == "values"
        if cfg.emf.enabled:
            docs = emf.documents(
                points,
                namespace=cfg.namespace,
                dimensions=dimensions,
                timestamp_ms=int(now * 1000),
                resolution=resolution,
                values=values,
            )
            for doc in docs:
                self._write(doc)
            self._emf_sent.inc(sum(len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs))
        if cfg.cloudwatch.enabled:
            self.cloudwatch.add(
                points,
                dimensions=dimensions,
                timestamp=datetime.fromtimestamp(now, UTC),
                resolution=resolution,
                values=values,
            )
            await self.cloudwatch.send(
                clients,
                cfg.namespace,
                budget=budget or cfg.cloudwatch.retry_budget,
                attempts=attempts,
            )
        self.flushes += 1
        self.last_flush_at = now

    async def close(self, deadline: float) -> None:
        """Stop the schedule and flush once more, giving up at `deadline` (loop time)."""
        await self._cancel()
        if not self.active:
            return
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("no time left for the final metrics flush")
            return
        try:
            async with asyncio.timeout(remaining):
                await self.flush(budget=remaining, attempts=FINAL_ATTEMPTS)
        except TimeoutError:
            pass
        if self.cloudwatch.buffer:
            self.cloudwatch.drop("shutdown", len(self.cloudwatch.buffer))
            log.warning(
                "metric data points not sent before the shutdown deadline",
                dropped=len(self.cloudwatch.buffer),
                last_error=self.cloudwatch.last_error,
            )
        else:
            log.info("metrics flushed", flushes=self.flushes)

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        cfg = self._cfg
        return {
            "cloudwatch": bool(cfg and cfg.cloudwatch.enabled),
            "emf": bool(cfg and cfg.emf.enabled),
            "prometheus": bool(cfg and cfg.prometheus.enabled),
            "flushes": self.flushes,
            "last_flush_at": self.last_flush_at,
            "buffered": len(self.cloudwatch.buffer),
            "put_metric_data_calls": self.cloudwatch.calls,
            "last_error": self.cloudwatch.last_error,
        }
