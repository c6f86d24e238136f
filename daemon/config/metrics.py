"""The `[metrics]` section: which exporters run, and what CloudWatch sees (namespace, dimensions,
resolution, which metrics). Also the placeholder templates (`{env}`, `{hostname}`,
`{instance_id}`) shared with the CloudWatch Logs shipper's group and stream names.

Defaults cost nothing: Prometheus on the loopback health server is on, the two CloudWatch
exporters (PutMetricData and EMF) are off until a config turns them on.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from daemon.base.fields import Section

PLACEHOLDERS = ("env", "hostname", "instance_id")


def check_template(value: str) -> str:
    """A string whose only `{...}` fields are the known placeholders."""
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        raise ValueError(
            f"bad placeholder syntax ({exc}); write {{{{ and }}}} for braces"
        ) from None
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}}; known: "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        )
    return value


Template = Annotated[str, AfterValidator(check_template)]
"""A string that may use `{env}`, `{hostname}` and `{instance_id}`."""

_NAMESPACE = r"^[0-9A-Za-z.\-_/#: ]{1,255}$"
_DIMENSION_NAME = re.compile(r"^[!-9;-~][ -~]{0,254}$")
_METRIC_PATTERN = r"^[A-Za-z_:*?\[\]!][A-Za-z0-9_:*?\[\]!]*$"

MetricPattern = Annotated[str, Field(pattern=_METRIC_PATTERN)]
"""A metric name or a shell-style pattern (`awsd_probe_*`)."""


def _check_namespace(value: str) -> str:
    if value.startswith("AWS/"):
        raise ValueError("namespaces starting with 'AWS/' are reserved for AWS services")
    return value


def _check_dimensions(value: dict[str, str]) -> dict[str, str]:
    for name, template in value.items():
        if not _DIMENSION_NAME.match(name):
            raise ValueError(
                f"dimension name {name!r} must be 1-255 printable ASCII characters, "
                "not starting with ':' or a space"
            )
        if not template.strip():
            raise ValueError(f"dimension {name!r} has an empty value (CloudWatch rejects it)")
        check_template(template)
    return value


class CloudWatchMetricsConfig(Section):
    """CloudWatch PutMetricData: one call per flush carries up to 1000 metrics."""

    enabled: bool = False
    """Send metrics with PutMetricData (costs: $0.01 per 1000 calls, plus each metric)."""

    buffer_size: int = Field(default=20_000, ge=1000, le=1_000_000)
    """Metric data points kept while CloudWatch cannot be reached; past it the oldest are
    dropped and counted (`awsd_metrics_dropped_total{reason="buffer_full"}`)."""

    retry_budget: float = Field(default=30.0, gt=0, le=600)
    """Seconds one flush may spend retrying throttling, 5xx and connection errors (capped
    exponential backoff with jitter); what is left is sent with the next flush."""


class EmfConfig(Section):
    """CloudWatch Embedded Metric Format: metrics as JSON log lines, zero PutMetricData calls.
    CloudWatch extracts them from CloudWatch Logs (ship the logs with `[log.cloudwatch]` or the
    CloudWatch agent)."""

    enabled: bool = False
    """Write one EMF line per dimension set (at most 100 metrics each) every flush."""


class PrometheusConfig(Section):
    """Prometheus text format at `GET /metrics` on the health server."""

    enabled: bool = True
    """Serve `/metrics` (needs `health.port`); when false the route answers 404."""


class MetricsConfig(Section):
    """Metrics exporters: CloudWatch PutMetricData, EMF log lines, Prometheus `/metrics`."""

    namespace: Annotated[str, AfterValidator(_check_namespace)] = Field(
        default="awsd", pattern=_NAMESPACE
    )
    """CloudWatch namespace of every metric (not starting with `AWS/`)."""

    dimensions: Annotated[dict[str, str], AfterValidator(_check_dimensions)] = Field(
        default_factory=lambda: {"environment": "{env}", "host": "{hostname}"}
    )
    """Dimensions added to every CloudWatch/EMF metric, beside the metric's own labels (worker,
    queue, endpoint...). Values may use `{env}`, `{hostname}`, `{instance_id}`."""

    flush_interval: float = Field(default=60.0, ge=0.2, le=3600)
    """Seconds between CloudWatch/EMF flushes: each flush sends one statistic set per series.
    60 matches CloudWatch's standard resolution; lower it only with `high_resolution`."""

    histograms: Literal["statistic_set", "values"] = "statistic_set"
    """How histograms reach CloudWatch. `statistic_set`: SampleCount, Sum, Minimum, Maximum
    (exact; no percentiles). `values`: also the distribution in 10 %-wide bins (Values/Counts),
    so CloudWatch computes percentiles (p50, p99); PutMetricData then derives Sum/Min/Max from
    the bins (within 5 %), EMF keeps them exact."""

    storage_resolution: Literal[1, 60] = 60
    """CloudWatch storage resolution in seconds for metrics not in `high_resolution`."""

    high_resolution: list[MetricPattern] = Field(default_factory=list)
    """Metrics stored at 1-second resolution (names or patterns like `awsd_probe_*`); costs
    more, and needs a `flush_interval` below 60 to be useful."""

    include: list[MetricPattern] = Field(default_factory=lambda: ["*"])
    """Metrics sent to CloudWatch/EMF (names or patterns). Each metric and dimension
    combination is a billed custom metric; Prometheus always gets everything."""

    exclude: list[MetricPattern] = Field(default_factory=list)
    """Metrics never sent to CloudWatch/EMF, even when `include` matches."""

    cloudwatch: CloudWatchMetricsConfig = Field(default_factory=CloudWatchMetricsConfig)
    """PutMetricData exporter."""

    emf: EmfConfig = Field(default_factory=EmfConfig)
    """Embedded Metric Format exporter."""

    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    """Prometheus `/metrics` endpoint."""

    @model_validator(mode="after")
    def _dimension_room(self) -> MetricsConfig:
        # CloudWatch allows 30 dimensions per metric; leave room for the metric's own labels.
        if len(self.dimensions) > 20:
            raise ValueError("at most 20 default dimensions (CloudWatch allows 30 per metric)")
        return self
