"""CloudWatch PutMetricData: snapshots become statistic sets, sent 1000 metrics per call.

The promises:
- one call per flush per 1000 metrics: each series is one MetricDatum per flush (a statistic set
  for a histogram, the increase for a counter, the value for a gauge), and a call carries up to
  1000 of them and at most 1 MB of request body (bodies are gzipped by botocore from 1 KiB);
- dimensions are the configured defaults plus the series' labels, made valid for CloudWatch
  (ASCII, non-empty, at most 30); NaN and infinities are dropped and counted, never sent;
- throttling, 5xx and connection errors are retried with capped backoff and jitter within the
  flush's budget; what is not sent waits in a bounded buffer for the next flush, as does what
  fails for credentials or permissions (an operator's fix away). A full buffer drops its oldest
  data points and counts them; data points older than two weeks (CloudWatch refuses them) are
  dropped and counted too; a call CloudWatch rejects for its content is dropped, counted and
  logged, and the rest goes on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from daemon.base.awserrors import describe_error, is_credentials_error, is_retryable
from daemon.base.retry import Backoff, retry
from daemon.core.aws import AwsClients
from daemon.core.logs import get_logger
from daemon.core.metrics.registry import Registry
from daemon.core.metrics.snapshot import Point

log = get_logger()

MAX_DATUMS = 1000
"""MetricDatum entries per PutMetricData call."""
MAX_BYTES = 1_000_000
"""Request body limit (1 MB); counted before compression, so always on the safe side."""
MAX_VALUES = 150
"""Distinct values per MetricDatum in Values/Counts."""
MAX_DIMENSIONS = 30
MAX_AGE = timedelta(days=14)
"""CloudWatch rejects data points older than two weeks."""
_REQUEST_OVERHEAD = 400  # Action, Version, Namespace and the signature's headroom

BACKOFF = Backoff(initial=0.5, maximum=10.0)


def clean_dimension(text: str, limit: int) -> str:
    """A valid dimension name or value: printable ASCII, not blank, not too long."""
    out = "".join(c if " " <= c <= "~" else "?" for c in text)[:limit]
    return out if out.strip() else "none"


def dimensions_for(
    defaults: Mapping[str, str], labels: tuple[tuple[str, str], ...]
) -> dict[str, str]:
    """The metric's dimensions: defaults, then its labels (a label wins over a default of the
    same name), at most 30."""
    merged = dict(defaults)
    for name, value in labels:
        merged[name] = value
    out: dict[str, str] = {}
    for name, value in merged.items():
        if len(out) == MAX_DIMENSIONS:
            break
        key = clean_dimension(name, 255).lstrip(":") or "none"
        out[key] = clean_dimension(value, 1024)
    return out


def to_datum(
    point: Point,
    *,
    dimensions: Mapping[str, str],
    timestamp: datetime,
    resolution: int,
    values: bool,
) -> dict[str, Any]:
    """One PutMetricData MetricDatum for one point."""
    datum: dict[str, Any] = {
        "MetricName": point.name,
        "Dimensions": [
            {"Name": k, "Value": v} for k, v in dimensions_for(dimensions, point.labels).items()
        ],
        "Timestamp": timestamp,
        "Unit": point.unit,
        "StorageResolution": resolution,
    }
    window = point.window
    if window is None:
        datum["Value"] = float(point.value)
    elif values:
        pairs = window.values(MAX_VALUES)
        datum["Values"] = [v for v, _ in pairs]
        datum["Counts"] = [float(c) for _, c in pairs]
    else:
        datum["StatisticValues"] = {
            "SampleCount": float(window.count),
            "Sum": float(window.sum),
            "Minimum": float(window.minimum),
            "Maximum": float(window.maximum),
        }
    return datum


def datum_size(datum: Mapping[str, Any]) -> int:
    """Upper bound of the datum's size in a PutMetricData body (the query protocol's
    `MetricData.member.N.Field=value&` pairs, N counted as four digits)."""
    return _encoded_size("MetricData.member.1000", datum)


def _encoded_size(prefix: str, value: Any) -> int:
    if isinstance(value, Mapping):
        return sum(_encoded_size(f"{prefix}.{k}", v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_encoded_size(f"{prefix}.member.{i + 1}", item) for i, item in enumerate(value))
    if isinstance(value, datetime):
        return len(prefix) + 32
    if isinstance(value, float):
        return len(prefix) + 2 + len(repr(value))
    return len(prefix) + 2 + len(quote(str(value), safe=""))


@dataclass(slots=True)
class Entry:
    datum: dict[str, Any]
    size: int


def take_batch(buffer: deque[Entry]) -> list[Entry]:
    """The oldest data points that fit in one call: at most 1000, at most 1 MB."""
    batch: list[Entry] = []
    size = _REQUEST_OVERHEAD
    while buffer and len(batch) < MAX_DATUMS:
        entry = buffer[0]
        if batch and size + entry.size > MAX_BYTES:
            break
        batch.append(buffer.popleft())
        size += entry.size
    return batch


class CloudWatchExporter:
    """Turns points into data points, buffers them (bounded) and sends them in batches."""

    def __init__(self, registry: Registry, *, buffer_size: int = 20_000) -> None:
        self.buffer: deque[Entry] = deque()
        self.buffer_size = buffer_size
        self.last_error: str | None = None
        self.last_success_at: float | None = None
        self.calls = 0
        sent = registry.counter(
            "awsd_metrics_sent_total", "Metric data points sent, by exporter", ("exporter",)
        )
        self._sent = sent.labels(exporter="cloudwatch")
        self._dropped = registry.counter(
            "awsd_metrics_dropped_total",
            "Metric data points dropped, by exporter and reason",
            ("exporter", "reason"),
        )
        self._buffered = registry.gauge(
            "awsd_metrics_buffered", "Metric data points waiting to be sent", ("exporter",)
        ).labels(exporter="cloudwatch")

    def drop(self, reason: str, count: int) -> None:
        if count:
            self._dropped.labels(exporter="cloudwatch", reason=reason).inc(count)

    def add(
        self,
        points: list[Point],
        *,
        dimensions: Mapping[str, str],
        timestamp: datetime,
        resolution: Callable[[str], int],
        values: bool,
    ) -> None:
        """Queue one flush's points; the oldest data points go when the buffer is full."""
        invalid = 0
        for point in points:
            if not point.finite():
                invalid += 1
                continue
            datum = to_datum(
                point,
                dimensions=dimensions,
                timestamp=timestamp,
                resolution=resolution(point.name),
                values=values,
            )
            self.buffer.append(Entry(datum, datum_size(datum)))
        self.drop("invalid_value", invalid)
        overflow = len(self.buffer) - self.buffer_size
        if overflow > 0:
            for _ in range(overflow):
                self.buffer.popleft()
            self.drop("buffer_full", overflow)
            log.warning(
                "metric buffer full; oldest data points dropped",
                dropped=overflow,
                buffer_size=self.buffer_size,
            )
        self._buffered.set(len(self.buffer))

    async def send(
        self, clients: AwsClients, namespace: str, *, budget: float, attempts: int | None = None
    ) -> int:
        """Send what is buffered within `budget` seconds (and `attempts` tries per call, at
        shutdown); return how many data points went."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        sent = 0
        self._expire()
        if not self.buffer:
            return 0
        client = await clients.client("cloudwatch")
        try:
            while self.buffer:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                batch = take_batch(self.buffer)
                try:
                    async with asyncio.timeout(remaining):
                        await self._put(client, namespace, batch, remaining, attempts)
                except asyncio.CancelledError:
                    self.buffer.extendleft(reversed(batch))
                    raise
                except Exception as exc:  # noqa: BLE001 - classified below: retry later or drop
                    if is_retryable(exc) or is_credentials_error(exc):
                        # Keep the batch, in order, for the next flush.
                        self.buffer.extendleft(reversed(batch))
                        self.last_error = describe_error(exc)
                        (log.error if is_credentials_error(exc) else log.warning)(
                            "PutMetricData failed; data points kept for the next flush",
                            error=self.last_error,
                            buffered=len(self.buffer),
                        )
                        break
                    self.last_error = describe_error(exc)
                    self.drop("rejected", len(batch))
                    log.error(
                        "PutMetricData rejected a batch; its data points are dropped",
                        error=self.last_error,
                        dropped=len(batch),
                    )
                    continue
                sent += len(batch)
                self._sent.inc(len(batch))
                self.last_success_at = loop.time()
                self.last_error = None
        finally:
            self._buffered.set(len(self.buffer))
        return sent

    async def _put(
        self,
        client: Any,
        namespace: str,
        batch: list[Entry],
        budget: float,
        attempts: int | None,
    ) -> None:
        data = [entry.datum for entry in batch]

        async def call() -> None:
            self.calls += 1
            await client.put_metric_data(Namespace=namespace, MetricData=data)

        await retry(call, retry_if=is_retryable, backoff=BACKOFF, budget=budget, attempts=attempts)

    def _expire(self) -> None:
        oldest = datetime.now(UTC) - MAX_AGE
        expired = 0
        while self.buffer and self.buffer[0].datum["Timestamp"] < oldest:
            self.buffer.popleft()
            expired += 1
        self.drop("expired", expired)


def resolution_for(high: Callable[[str], bool], default: int) -> Callable[[str], int]:
    def resolution(name: str) -> int:
        return 1 if high(name) else default

    return resolution
