"""The metrics registry: counters, gauges and histograms with dimensions, cheap on the hot path.

Workers create their series once (`family.labels(queue="orders")`) and keep the child; updating
it is an attribute add. Exporters (CloudWatch statistic sets, EMF, Prometheus) read the registry;
histograms also keep a per-window summary (count, sum, min, max) that the CloudWatch exporters
drain each flush, while the cumulative buckets serve Prometheus.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

Kind = Literal["counter", "gauge", "histogram"]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
    """Summary of the observations since the previous drain: a CloudWatch statistic set."""

    count: int
    sum: float
    minimum: float
    maximum: float


class Histogram:
    """Cumulative buckets (for Prometheus) plus a drainable window summary (for CloudWatch)."""

    __slots__ = ("bounds", "buckets", "count", "sum", "w_count", "w_max", "w_min", "w_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.w_count = 0
        self.w_sum = 0.0
        self.w_min = math.inf
        self.w_max = -math.inf

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        self.w_count += 1
        self.w_sum += value
        self.w_min = min(self.w_min, value)
        self.w_max = max(self.w_max, value)

    def drain_window(self) -> Window | None:
        """Return and reset the window summary; None when nothing was observed."""
        if not self.w_count:
            return None
        window = Window(self.w_count, self.w_sum, self.w_min, self.w_max)
        self.w_count, self.w_sum, self.w_min, self.w_max = 0, 0.0, math.inf, -math.inf
        return window


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
                    self._children[key] = child
        return child

    def remove(self, **labels: str) -> None:
        """Forget a series (a removed queue or a lost shard), so it stops being exported."""
        self._children.pop(tuple(str(labels[n]) for n in self.labelnames), None)

    def series(self) -> Iterator[tuple[dict[str, str], M]]:
        for key, child in list(self._children.items()):
            yield dict(zip(self.labelnames, key, strict=True)), child


class Registry:
    """Every metric of the process. Asking twice for the same name returns the same family."""

    def __init__(self) -> None:
        self._families: dict[str, Family[Counter] | Family[Gauge] | Family[Histogram]] = {}

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
            name, help, "histogram", labels, factory=lambda: Histogram(bounds), buckets=bounds
        )

    def families(self) -> list[Family[Counter] | Family[Gauge] | Family[Histogram]]:
        return list(self._families.values())

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
