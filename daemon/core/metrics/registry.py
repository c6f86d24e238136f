"""The metrics registry: counters, gauges and histograms with dimensions, cheap on the hot path.

Workers create their series once (`family.labels(queue="orders")`) and keep the child; updating
it is an attribute add (about 50 ns for a counter, see docs/benchmarks.md "Metrics"). Exporters
(CloudWatch statistic sets, EMF, Prometheus) read the registry; histograms also keep a per-window
summary (count, sum, min, max) that the CloudWatch exporters drain each flush, while the
cumulative buckets serve Prometheus. When an exporter sends distributions (CloudWatch
Values/Counts, EMF histograms), histograms also count their window's observations in
logarithmic bins 10 % wide, so CloudWatch can compute percentiles.

Components that own a depth rather than events (the outbox, queues) register a collector: a
function run just before every export that sets their gauges, so nothing polls in between.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from daemon.base.redact import redact_url
from daemon.core.logs import get_logger

log = get_logger()

Kind = Literal["counter", "gauge", "histogram"]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Distribution bins: bin k of a positive value v holds v in [BASE**k, BASE**(k+1)), reported as the
# bin's geometric middle (within 5 % of every value in it). Keys are ints: 2k for positive
# values, 2k+1 for negative ones (of -v), and ZERO_BIN for zero, so one dict holds all three.
BIN_WIDTH = 0.1
_INV_LOG_BASE = 1.0 / math.log1p(BIN_WIDTH)
ZERO_BIN = 1 << 40


def bin_key(value: float) -> int:
    """The distribution bin of `value`."""
    if value > 0:
        return 2 * math.floor(math.log(value) * _INV_LOG_BASE)
    if value < 0:
        return 2 * math.floor(math.log(-value) * _INV_LOG_BASE) + 1
    return ZERO_BIN


class Counter:
    """A monotonically increasing value."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Gauge:
    """A value that goes up and down."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


@dataclass(frozen=True, slots=True)
class Window:
    """Summary of the observations since the previous drain: a CloudWatch statistic set, plus
    the distribution bins when distributions are tracked."""

    count: int
    sum: float
    minimum: float
    maximum: float
    bins: Mapping[int, int] = field(default_factory=dict)
    """Observation counts by `bin_key` (empty unless distributions are tracked)."""

    def values(self, limit: int) -> list[tuple[float, int]]:
        """(value, count) pairs for CloudWatch Values/Counts: at most `limit` of them (adjacent
        bins are merged, doubling their width, until they fit), each value clamped to
        [minimum, maximum] so statistics computed from them stay within the true range."""
        bins = dict(self.bins)
        if not bins:
            return [(self.sum / self.count, self.count)] if self.count else []
        level = 0
        while len(bins) > limit:
            merged: dict[int, int] = {}
            for key, count in bins.items():
                new = key if key == ZERO_BIN else ((key >> 2) << 1) | (key & 1)
                merged[new] = merged.get(new, 0) + count
            bins, level = merged, level + 1
        out = []
        for key, count in sorted(bins.items(), key=lambda kv: _bin_value(kv[0], level)):
            value = min(self.maximum, max(self.minimum, _bin_value(key, level)))
            out.append((value, count))
        return out


def _bin_value(key: int, level: int) -> float:
    if key == ZERO_BIN:
        return 0.0
    k = key >> 1
    width = 1 << level
    middle = math.exp((k + 0.5) * width / _INV_LOG_BASE)
    return -middle if key & 1 else middle


class Histogram:
    """Cumulative buckets (for Prometheus) plus a drainable window summary (for CloudWatch)."""

    __slots__ = (
        "bounds",
        "buckets",
        "count",
        "drained_count",
        "drained_sum",
        "sum",
        "w_bins",
        "w_max",
        "w_min",
    )

    def __init__(self, bounds: tuple[float, ...], distribution: bool = False) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0
        # The window's count and sum are the cumulative ones minus these: two updates fewer
        # per observation than keeping them apart.
        self.drained_count = 0
        self.drained_sum = 0.0
        self.w_min = math.inf
        self.w_max = -math.inf
        self.w_bins: dict[int, int] | None = {} if distribution else None

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        # Comparisons rather than min()/max(): two calls fewer on the hot path.
        if value < self.w_min:  # noqa: PLR1730 - min() is a call: twice the cost here
            self.w_min = value
        if value > self.w_max:  # noqa: PLR1730
            self.w_max = value
        bins = self.w_bins
        if bins is not None:
            key = bin_key(value)
            bins[key] = bins.get(key, 0) + 1

    def drain_window(self) -> Window | None:
        """Return and reset the window summary; None when nothing was observed."""
        count = self.count - self.drained_count
        if not count:
            return None
        bins = self.w_bins
        lo, hi = self.w_min, self.w_max
        # A difference of running sums can be off in the last bits; CloudWatch wants a
        # statistic set some set of values could have produced.
        total = min(max(self.sum - self.drained_sum, lo * count), hi * count)
        window = Window(count, total, lo, hi, bins or {})
        if not math.isfinite(self.sum):
            # A NaN or infinite observation: this window is dropped (and counted) by the
            # exporters; the running sum starts again so the next windows are not lost too.
            self.sum = 0.0
        self.drained_count, self.drained_sum = self.count, self.sum
        self.w_min, self.w_max = math.inf, -math.inf
        if bins is not None:
            self.w_bins = {}
        return window

    def track_distribution(self, on: bool) -> None:
        if on and self.w_bins is None:
            self.w_bins = {}
        elif not on:
            self.w_bins = None


M = TypeVar("M", Counter, Gauge, Histogram)


class Family(Generic[M]):
    """All series of one metric name, keyed by their label values."""

    def __init__(
        self,
        name: str,
        help: str,
        kind: Kind,
        labelnames: tuple[str, ...],
        *,
        factory: Callable[[], M],
        buckets: tuple[float, ...] = (),
    ) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self.labelnames = labelnames
        self.buckets = buckets
        self._factory: Callable[[], M] = factory
        self._children: dict[tuple[str, ...], M] = {}
        self._shown: dict[tuple[str, ...], tuple[str, ...]] = {}
        """Label values as exported: a URL in a label (a queue URL, a webhook) is redacted."""
        self._lock = threading.Lock()

    def labels(self, **labels: str) -> M:
        """The series for these label values (created on first use; keep it on the hot path)."""
        if labels.keys() != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        key = tuple(str(labels[n]) for n in self.labelnames)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = self._factory()
                    self._shown[key] = tuple(redact_url(v) if "://" in v else v for v in key)
                    self._children[key] = child
        return child

    def remove(self, **labels: str) -> None:
        """Forget a series (a removed queue or a lost shard), so it stops being exported."""
        key = tuple(str(labels[n]) for n in self.labelnames)
        self._children.pop(key, None)
        self._shown.pop(key, None)

    def series(self) -> Iterator[tuple[dict[str, str], M]]:
        for key, child in self.items():
            yield dict(zip(self.labelnames, key, strict=True)), child

    def items(self) -> list[tuple[tuple[str, ...], M]]:
        """(label values as exported, series) pairs, for exporters."""
        return [(self._shown.get(key, key), child) for key, child in list(self._children.items())]


AnyFamily = Family[Counter] | Family[Gauge] | Family[Histogram]
Collector = Callable[[], None]


class Registry:
    """Every metric of the process. Asking twice for the same name returns the same family."""

    def __init__(self) -> None:
        self._families: dict[str, AnyFamily] = {}
        self._collectors: list[Collector] = []
        self._failing: set[int] = set()
        self._distributions = False

    def counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Family[Counter]:
        return self._get(name, help, "counter", labels, factory=Counter)

    def gauge(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Family[Gauge]:
        return self._get(name, help, "gauge", labels, factory=Gauge)

    def histogram(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> Family[Histogram]:
        bounds = tuple(sorted(buckets))
        return self._get(
            name,
            help,
            "histogram",
            labels,
            factory=lambda: Histogram(bounds, self._distributions),
            buckets=bounds,
        )

    def families(self) -> list[AnyFamily]:
        return list(self._families.values())

    def get(self, name: str) -> AnyFamily | None:
        return self._families.get(name)

    # --- collectors ------------------------------------------------------------------------------

    def add_collector(self, collector: Collector) -> Collector:
        """Run `collector` before every export (a Prometheus scrape, a CloudWatch/EMF flush); it
        sets gauges from state its owner keeps anyway (an outbox depth, a queue size). Returns it,
        for `remove_collector`."""
        self._collectors.append(collector)
        return collector

    def remove_collector(self, collector: Collector) -> None:
        if collector in self._collectors:
            self._collectors.remove(collector)

    def collect(self) -> None:
        """Run the collectors. A failing one is logged once and skipped; exports go on."""
        for collector in tuple(self._collectors):
            try:
                collector()
            except Exception as exc:  # noqa: BLE001 - one broken collector must not stop exports
                if id(collector) not in self._failing:
                    self._failing.add(id(collector))
                    log.warning(
                        "metrics collector failed", collector=repr(collector), error=repr(exc)
                    )

    # --- distributions ---------------------------------------------------------------------------

    @property
    def distributions(self) -> bool:
        return self._distributions

    def track_distributions(self, on: bool) -> None:
        """Make every histogram (existing and future) bin its window's observations."""
        if on == self._distributions:
            return
        self._distributions = on
        for family in self._families.values():
            if family.kind == "histogram":
                for _, child in family.items():
                    child.track_distribution(on)  # type: ignore[union-attr]

    def _get(
        self,
        name: str,
        help: str,
        kind: Kind,
        labels: tuple[str, ...],
        *,
        factory: Callable[[], M],
        buckets: tuple[float, ...] = (),
    ) -> Family[M]:
        existing = self._families.get(name)
        if existing is not None:
            if existing.kind != kind or existing.labelnames != labels:
                raise ValueError(
                    f"metric {name} already registered as {existing.kind}{existing.labelnames}"
                )
            return existing  # type: ignore[return-value]
        family = Family(name, help, kind, labels, factory=factory, buckets=buckets)
        self._families[name] = family
        return family
