"""CloudWatch Embedded Metric Format: the same metrics as JSON log lines, zero API calls.

CloudWatch Logs turns each line into metrics when it reaches a log group (through awsd's own
shipper, `[log.cloudwatch]`, or the CloudWatch agent reading journald). Following the published
specification:
- one document per distinct set of dimension values (the dimensions are root members with string
  values, named in one DimensionSet of at most 30 keys), split so that no directive holds more
  than 100 metrics;
- a counter is its increase since the last flush, a gauge its value, a histogram a statistic set
  `{"Max", "Min", "Count", "Sum"}`, plus `"Values"`/`"Counts"` (at most 100 bins) when
  `metrics.histograms = "values"`, the form AWS's own EMF libraries write;
- `StorageResolution: 1` for the metrics in `metrics.high_resolution`.

The lines go through the logs pipeline (redaction, sinks, stdout), whatever `log.level` is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from daemon.core.metrics.snapshot import Point
from daemon.telemetry.cloudwatch import clean_dimension, dimensions_for

MAX_METRICS = 100
"""MetricDefinitions per directive."""
MAX_VALUES = 100
"""Members of a Values array."""
EVENT = "metrics"
"""The `event` field of every EMF line (to find them: `jq 'select(.event == "metrics")'`)."""

# Members the logs pipeline owns; a dimension of the same name would be overwritten.
RESERVED = frozenset({"_aws", "event", "level", "timestamp", "logger"})


def documents(
    points: list[Point],
    *,
    namespace: str,
    dimensions: Mapping[str, str],
    timestamp_ms: int,
    resolution: Callable[[str], int],
    values: bool,
) -> list[dict[str, Any]]:
    """EMF documents for one flush (root members only; the logs pipeline adds the rest)."""
    groups: dict[tuple[tuple[str, str], ...], list[Point]] = {}
    for point in points:
        if point.finite():
            dims = _dimensions(dimensions, point.labels)
            groups.setdefault(tuple(dims.items()), []).append(point)
    docs = []
    for dims_key, group in groups.items():
        dims = dict(dims_key)
        for start in range(0, len(group), MAX_METRICS):
            chunk = group[start : start + MAX_METRICS]
            docs.append(
                _document(
                    chunk,
                    namespace=namespace,
                    dims=dims,
                    timestamp_ms=timestamp_ms,
                    resolution=resolution,
                    values=values,
                )
            )
    return docs


def _dimensions(defaults: Mapping[str, str], labels: tuple[tuple[str, str], ...]) -> dict[str, str]:
    out = {}
    for name, value in dimensions_for(defaults, labels).items():
        key = f"{name}_" if name in RESERVED else name
        out[key] = clean_dimension(value, 1024)
    return out


def _document(
    points: list[Point],
    *,
    namespace: str,
    dims: dict[str, str],
    timestamp_ms: int,
    resolution: Callable[[str], int],
    values: bool,
) -> dict[str, Any]:
    definitions: list[dict[str, Any]] = []
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": [list(dims)], "Metrics": definitions}
            ],
        },
        **dims,
    }
    for point in points:
        name = point.name if point.name not in doc else f"{point.name}_value"
        definition: dict[str, Any] = {"Name": name, "Unit": point.unit}
        if resolution(point.name) == 1:
            definition["StorageResolution"] = 1
        definitions.append(definition)
        doc[name] = _value(point, values)
    return doc


def _value(point: Point, values: bool) -> Any:
    window = point.window
    if window is None:
        return point.value
    out: dict[str, Any] = {
        "Max": window.maximum,
        "Min": window.minimum,
        "Count": window.count,
        "Sum": window.sum,
    }
    if values:
        pairs = window.values(MAX_VALUES)
        out["Values"] = [v for v, _ in pairs]
        out["Counts"] = [c for _, c in pairs]
    return out
