"""The `[log.cloudwatch]` section: shipping every log event to a CloudWatch Logs stream."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from daemon.base.fields import Section
from daemon.config.metrics import check_template

Retention = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
]  # fmt: skip
LogLevel = Literal["debug", "info", "warning", "error"]

_GROUP_CHARS = re.compile(r"^[.\-_/#A-Za-z0-9]*$")


def _literal_text(template: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "", template.replace("{{", "").replace("}}", ""))


def _check_group(value: str) -> str:
    check_template(value)
    if not _GROUP_CHARS.match(_literal_text(value)):
        raise ValueError(
            "log group names use only letters, digits and . - _ / # (plus placeholders)"
        )
    if len(value) > 512:
        raise ValueError("log group names are at most 512 characters")
    return value


def _check_stream(value: str) -> str:
    check_template(value)
    if ":" in value or "*" in value:
        raise ValueError("log stream names cannot contain ':' or '*'")
    if len(value) > 512:
        raise ValueError("log stream names are at most 512 characters")
    return value


class CloudWatchLogsConfig(Section):
    """Ship every log event (already redacted) to CloudWatch Logs with PutLogEvents."""

    enabled: bool = False
    """Ship log events to CloudWatch Logs (journald still gets every line)."""

    log_group: Annotated[str, AfterValidator(_check_group)] = Field(
        default="/awsd/{env}", min_length=1
    )
    """Log group; may use `{env}`, `{hostname}`, `{instance_id}`."""

    log_stream: Annotated[str, AfterValidator(_check_stream)] = Field(
        default="{hostname}", min_length=1
    )
    """Log stream; may use `{env}`, `{hostname}`, `{instance_id}` (the EC2 instance id from
    IMDSv2; the hostname elsewhere)."""

    create: bool = True
    """Create the group (tagged `awsd:env`) and the stream when missing. Turn off when the
    IAM policy allows only logs:PutLogEvents."""

    retention_days: Retention | None = 30
    """Retention set on a log group awsd creates (unset: never expire). Events older than it
    are dropped before sending, since CloudWatch would reject them."""

    level: LogLevel = "debug"
    """Lowest level shipped (events below `log.level` are never produced at all)."""

    flush_interval: float = Field(default=5.0, ge=0.05, le=300)
    """Seconds between shipments; a full batch (10,000 events or 1 MiB) goes at once."""

    buffer_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=512 * 1024 * 1024)
    """Bytes of events kept while CloudWatch Logs cannot be reached; past it the oldest are
    dropped and counted (`awsd_logs_dropped_total{reason="buffer_full"}`)."""

    max_event_bytes: int = Field(default=262_144, ge=1024, le=1_048_576)
    """Largest event, counting CloudWatch's 26 bytes of overhead (256 KiB is accepted by every
    region; CloudWatch now allows 1 MiB). Longer events are cut and end in `[Truncated...]`."""

    retry_budget: float = Field(default=30.0, gt=0, le=600)
    """Seconds one shipment may spend retrying throttling, 5xx and connection errors (capped
    exponential backoff with jitter) before the batch waits for the next one."""

    gzip: bool = True
    """Compress PutLogEvents bodies (Content-Encoding: gzip, as the CloudWatch agent does)."""
