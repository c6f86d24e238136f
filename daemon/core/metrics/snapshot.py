"""One flush worth of metrics: what the CloudWatch and EMF exporters send.

Counters become the increase since the previous snapshot (CloudWatch's Sum over a period is then
the count in that period), gauges their current value, histograms the statistic set of their
window (drained here, and only here, so two exporters never split a window between them).
Names map to CloudWatch units by their suffix (`_seconds`, `_bytes`, `_total`).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from daemon.core.metrics.registry import Counter, Gauge, Histogram, Kind, Registry, Window

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Point:
    """One series in one flush."""

    name: str
    kind: Kind
    labels: Labels
    value: float = 0.0
    """Counter increase since the last flush, or gauge value."""
    window: Window | None = None
    """Histogram observations since the last flush."""

    @property
    def unit(self) -> str:
        return unit_for(self.name)

    def finite(self) -> bool:
        """CloudWatch rejects NaN and infinities; such points are dropped and counted."""
        if self.window is None:
            return math.isfinite(self.value)
        w = self.window
        return math.isfinite(w.sum) and math.isfinite(w.minimum) and math.isfinite(w.maximum)


@lru_cache(maxsize=1024)
def unit_for(name: str) -> str:
    """The CloudWatch unit a metric name implies."""
    base = name.removesuffix("_total")
    if base.endswith("_seconds"):
        return "Seconds"
    if base.endswith("_bytes"):
        return "Bytes"
    if base.endswith("_percent"):
        return "Percent"
    if name.endswith("_total"):
        return "Count"
    return "None"


class Selector:
    """Which metric names go to CloudWatch (include/exclude patterns), cached per name."""

    def __init__(self, include: Iterable[str] = ("*",), exclude: Iterable[str] = ()) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        found = self._cache.get(name)
        if found is None:
            found = any(fnmatch.fnmatchcase(name, p) for p in self.include) and not any(
                fnmatch.fnmatchcase(name, p) for p in self.exclude
            )
            self._cache[name] = found
        return found


class Snapshots:
    """Takes snapshots of one registry, remembering counter values between them."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}

    def take(self, select: Callable[[str], bool] = lambda _: True) -> list[Point]:
        """Every selected series now. Histogram windows are drained whether selected or not,
        so an excluded histogram never accumulates."""
        self.registry.collect()
        points: list[Point] = []
        previous, self._last = self._last, {}
        for family in self.registry.families():
            wanted = select(family.name)
            names = family.labelnames
            for key, child in family.items():
                labels = tuple(zip(names, key, strict=True))
                if isinstance(child, Histogram):
                    window = child.drain_window()
                    if wanted and window is not None:
                        points.append(Point(family.name, "histogram", labels, window=window))
                elif isinstance(child, Counter):
                    if wanted:
                        points.append(self._counter(family.name, key, labels, child, previous))
                elif wanted and isinstance(child, Gauge):
                    points.append(Point(family.name, "gauge", labels, child.value))
        return points

    def _counter(
        self,
        name: str,
        key: tuple[str, ...],
        labels: Labels,
        child: Counter,
        previous: dict[tuple[str, tuple[str, ...]], float],
    ) -> Point:
        # Only series still in the registry are remembered: removed ones (a lost shard) go.
        now = child.value
        before = previous.get((name, key), 0.0)
        self._last[(name, key)] = now
        # A counter never goes down; if it did (a series removed and created again) the new
        # value is the increase.
        increase = now - before if now >= before else now
        return Point(name, "counter", labels, increase)
