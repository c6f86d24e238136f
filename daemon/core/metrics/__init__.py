"""Metrics: one registry for the whole process, and the exporters that read it.

`registry` holds the counters, gauges and histograms every component updates. The exporters
beside it turn the registry into CloudWatch PutMetricData statistic sets (`cloudwatch`), Embedded
Metric Format log lines (`emf`) and the Prometheus text format (`prometheus`); `export` is the
process-lifetime service that flushes the first two on a schedule and at shutdown.
"""

from daemon.core.metrics.registry import (
    DEFAULT_BUCKETS,
    AnyFamily,
    Collector,
    Counter,
    Family,
    Gauge,
    Histogram,
    Kind,
    Registry,
    Window,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "AnyFamily",
    "Collector",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "Kind",
    "Registry",
    "Window",
]
