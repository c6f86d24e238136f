"""What the process-lifetime telemetry services need from IAM: metrics export and log shipping.

Kept apart from the services themselves so `awsd iam-policy` and `check-config` do not load the
AWS stack to tell.
"""

from __future__ import annotations

from daemon.config.models import Config
from daemon.core import identity
from daemon.core.iam import Grant, Scope


def metrics_grants(config: Config, scope: Scope) -> list[Grant]:
    """PutMetricData has no resource in IAM; a condition on `cloudwatch:namespace` keeps the
    grant to awsd's own namespace. (EMF and Prometheus call nothing.)"""
    cfg = config.metrics
    if not cfg.cloudwatch.enabled:
        return []
    return [
        Grant(
            "metrics",
            ("cloudwatch:PutMetricData",),
            ("*",),
            condition=(("StringEquals", "cloudwatch:namespace", cfg.namespace),),
        )
    ]


def log_grants(config: Config, scope: Scope) -> list[Grant]:
    """PutLogEvents on the stream; with `create`, creating the group (tagged, so TagResource
    too) with its retention, and the stream. `{hostname}` and `{instance_id}` become `*`: the
    policy is made once for every host. The instance id comes from IMDSv2, which needs no IAM
    permission."""
    cfg = config.log.cloudwatch
    if not cfg.enabled:
        return []
    any_host = identity.Identity(config.env, "*", "*")
    group = any_host.expand(cfg.log_group)
    stream = any_host.expand(cfg.log_stream)
    prefix = f"arn:{scope.partition}:logs:{scope.region}:{scope.account}:log-group:{group}"
    stream_arn = f"{prefix}:log-stream:{stream}"
    grants = [Grant("logs", ("logs:PutLogEvents",), (stream_arn,), sid="LogsShip")]
    if cfg.create:
        actions = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:TagResource"]
        if cfg.retention_days is not None:
            actions.append("logs:PutRetentionPolicy")
        # IAM matches a log group's actions against `...:log-group:NAME` or `...:NAME:*`
        # depending on the action; both are the same group.
        grants.append(Grant("logs", tuple(actions), (prefix, f"{prefix}:*"), sid="LogsCreate"))
    return grants
