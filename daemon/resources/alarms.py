"""CloudWatch metric alarms: metric, statistic, threshold, period, SNS actions, tags.

PutMetricAlarm replaces the whole alarm, so an update sends the full definition: the declared
fields from the config, and for optional fields the file leaves out, what the alarm has now.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.base.fields import ActionRef
from daemon.resources.diff import Entries
from daemon.resources.kind import (
    ACCESS_DENIED,
    Declared,
    Found,
    Kind,
    NameRule,
    Observed,
    Place,
    ResourceBase,
    ResourceRef,
    Session,
    owned_by,
    ownership_tags,
    tag_dict,
    tag_list,
    tags_to_set,
)

COMPARISONS = {
    ">": "GreaterThanThreshold",
    ">=": "GreaterThanOrEqualToThreshold",
    "<": "LessThanThreshold",
    "<=": "LessThanOrEqualToThreshold",
}


class AlarmConfig(ResourceBase):
    """A CloudWatch metric alarm, for example on awsd's own probe metrics."""

    metric: str = Field(min_length=1, max_length=255)
    """Metric name."""

    namespace: str = Field(default="awsd", min_length=1, max_length=255)
    """Metric namespace."""

    dimensions: dict[str, str] = Field(default_factory=dict)
    """Metric dimensions, all of which the metric must carry: for a probe metric
    `{ endpoint = "home", environment = "prod", host = "pi-1" }`."""

    function: str | None = None
    """A declared function (logical name) whose metric this is: adds the dimension
    `FunctionName` = its AWS name (set `namespace = "AWS/Lambda"`). A function's
    `alarm = { ... }` declares such alarms itself."""

    statistic: Literal["Average", "Sum", "Minimum", "Maximum", "SampleCount"] = "Average"
    """Statistic over each period."""

    comparison: Literal[">", ">=", "<", "<="] = ">="
    """How the statistic is compared with the threshold."""

    threshold: float
    """Threshold value."""

    period: int = Field(default=60, ge=10)
    """Seconds per evaluation period (10, 30, or a multiple of 60)."""

    evaluation_periods: int = Field(default=1, ge=1, le=1440)
    """Periods evaluated."""

    datapoints_to_alarm: int | None = Field(default=None, ge=1)
    """Breaching periods among `evaluation_periods` that raise the alarm (M out of N)."""

    treat_missing_data: Literal["breaching", "notBreaching", "ignore", "missing"] | None = None
    """How missing data points count."""

    description: str | None = Field(default=None, max_length=1024)
    """Alarm description."""

    alarm_actions: list[ActionRef] = Field(default_factory=list)
    """Topics notified when the alarm fires: declared logical names or ARNs."""

    ok_actions: list[ActionRef] = Field(default_factory=list)
    """Topics notified when it returns to OK."""

    insufficient_data_actions: list[ActionRef] = Field(default_factory=list)
    """Topics notified when data is missing."""

    @model_validator(mode="after")
    def _consistent(self) -> AlarmConfig:
        if self.period not in (10, 30) and self.period % 60:
            raise ValueError("period must be 10, 30 or a multiple of 60 seconds")
        if self.datapoints_to_alarm is not None and (
            self.datapoints_to_alarm > self.evaluation_periods
        ):
            raise ValueError("datapoints_to_alarm cannot exceed evaluation_periods")
        return self


MISSING = frozenset({"ResourceNotFound", "ResourceNotFoundException"})
_SYMBOLS = {name: symbol for symbol, name in COMPARISONS.items()}
_ACTION_FIELDS = ("alarm_actions", "ok_actions", "insufficient_data_actions")

# config field -> PutMetricAlarm / DescribeAlarms field
_FIELDS = {
    "metric": "MetricName",
    "namespace": "Namespace",
    "statistic": "Statistic",
    "threshold": "Threshold",
    "period": "Period",
    "evaluation_periods": "EvaluationPeriods",
    "datapoints_to_alarm": "DatapointsToAlarm",
    "treat_missing_data": "TreatMissingData",
    "description": "AlarmDescription",
    "alarm_actions": "AlarmActions",
    "ok_actions": "OKActions",
    "insufficient_data_actions": "InsufficientDataActions",
}


class AlarmKind(Kind[AlarmConfig]):
    name = "alarms"
    singular = "alarm"
    name_rule = NameRule(re.compile(r"^[^\x00-\x1f]{1,255}$"), "1-255 printable characters")
    service = "cloudwatch"
    tag_read_actions = ("cloudwatch:ListTagsForResource",)
    read_actions = ("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource")
    write_actions = ("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource")
    delete_actions = ("cloudwatch:DeleteAlarms",)
    list_actions = ("cloudwatch:DescribeAlarms",)

    def references(self, name: str, spec: AlarmConfig, all_declared: Any) -> list[ResourceRef]:
        refs = [
            ResourceRef("topics", target, f"resources.alarms.{name}.{field}[{i}]", f"alarm.{name}")
            for field in ("alarm_actions", "ok_actions", "insufficient_data_actions")
            for i, target in enumerate(getattr(spec, field))
        ]
        if spec.function is not None:
            path = f"resources.alarms.{name}.function"
            refs.append(ResourceRef("functions", spec.function, path, f"alarm.{name}"))
        return refs

    def arn(self, physical: str, ctx: Place) -> str:
        return f"arn:{ctx.partition}:cloudwatch:{ctx.region}:{ctx.account}:alarm:{physical}"

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, AlarmConfig)
        out: dict[str, Any] = {
            "metric": spec.metric,
            "namespace": spec.namespace,
            "dimensions": _dimensions(spec, ctx),
            "statistic": spec.statistic,
            "comparison": spec.comparison,
            "threshold": spec.threshold,
            "period": spec.period,
            "evaluation_periods": spec.evaluation_periods,
        }
        for field in ("datapoints_to_alarm", "treat_missing_data", "description"):
            if getattr(spec, field) is not None:
                out[field] = getattr(spec, field)
        for field in _ACTION_FIELDS:
            out[field] = [ctx.arn_of("topics", ref) for ref in getattr(spec, field)]
        out["tags"] = Entries({**spec.tags, **ownership_tags(ctx.env)})
        return out

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        got = await ctx.call(
            "cloudwatch", "describe_alarms", AlarmNames=[res.physical], AlarmTypes=["MetricAlarm"]
        )
        alarms = got.get("MetricAlarms", [])
        if not alarms:
            return None
        alarm = alarms[0]
        state: dict[str, Any] = {f: alarm.get(name) for f, name in _FIELDS.items()}
        for field in _ACTION_FIELDS:
            state[field] = list(state[field] or [])
        state["comparison"] = _SYMBOLS.get(alarm.get("ComparisonOperator", ""))
        state["dimensions"] = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        tags = await ctx.call_or_none(
            MISSING, "cloudwatch", "list_tags_for_resource", ResourceARN=res.arn
        )
        state["tags"] = tag_dict((tags or {}).get("Tags"))
        return Observed(state)

    def _params(
        self, res: Declared, desired: dict[str, Any], current: dict[str, Any]
    ) -> dict[str, Any]:
        merged = {**{k: v for k, v in current.items() if v is not None}, **desired}
        params: dict[str, Any] = {
            "AlarmName": res.physical,
            "ComparisonOperator": COMPARISONS[merged["comparison"]],
            "Dimensions": [
                {"Name": k, "Value": v} for k, v in sorted(merged["dimensions"].items())
            ],
        }
        for field, name in _FIELDS.items():
            if merged.get(field) is not None:
                params[name] = merged[field]
        return params

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        params = self._params(res, desired, {})
        await ctx.call(
            "cloudwatch", "put_metric_alarm", **params, Tags=tag_list(dict(desired["tags"]))
        )

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        if changed - {"tags"}:
            current = {k: v for k, v in observed.state.items() if k != "tags"}
            await ctx.call("cloudwatch", "put_metric_alarm", **self._params(res, desired, current))
        tags = tags_to_set(res, observed, desired)
        if tags:
            await ctx.call("cloudwatch", "tag_resource", ResourceARN=res.arn, Tags=tag_list(tags))

    async def delete(self, ctx: Session, found: Found) -> None:
        await ctx.call("cloudwatch", "delete_alarms", AlarmNames=[found.physical])

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {"AlarmTypes": ["MetricAlarm"]}
        while True:
            page = await ctx.call("cloudwatch", "describe_alarms", **params)
            for alarm in page.get("MetricAlarms", []):
                arn = alarm["AlarmArn"]
                tags = await ctx.call_or_none(
                    MISSING | ACCESS_DENIED, "cloudwatch", "list_tags_for_resource", ResourceARN=arn
                )
                found_tags = tag_dict((tags or {}).get("Tags"))
                if owned_by(found_tags, ctx.env):
                    owned.append(Found("alarms", alarm["AlarmName"], arn, found_tags))
            if not page.get("NextToken"):
                return owned
            params["NextToken"] = page["NextToken"]


def _dimensions(spec: AlarmConfig, ctx: Session) -> dict[str, str]:
    dimensions = dict(spec.dimensions)
    if spec.function is not None:
        dimensions["FunctionName"] = ctx.physical_of("functions", spec.function)
    return dimensions


ALARMS = AlarmKind(AlarmConfig)
