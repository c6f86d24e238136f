"""CloudWatch metric alarms: metric, statistic, threshold, period, SNS actions, tags.

PutMetricAlarm replaces the whole alarm, so an update sends the full definition: the declared
fields from the config, and for optional fields the file leaves out, what the alarm has now.
"""

from __future__ import annotations

from typing import Any

from daemon.config.resources import COMPARISONS, AlarmConfig
from daemon.resources.base import (
    ACCESS_DENIED,
    Adapter,
    Context,
    Found,
    Observed,
    owned_by,
    ownership_tags,
    tag_dict,
    tag_list,
    tags_to_set,
)
from daemon.resources.diff import Entries
from daemon.resources.naming import Declared, Names

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


class AlarmAdapter(Adapter):
    kind = "alarms"
    service = "cloudwatch"
    tag_read_actions = ("cloudwatch:ListTagsForResource",)
    read_actions = ("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource")
    write_actions = ("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource")
    delete_actions = ("cloudwatch:DeleteAlarms",)
    list_actions = ("cloudwatch:DescribeAlarms",)

    def arn(self, physical: str, ctx: Names) -> str:
        return f"arn:{ctx.partition}:cloudwatch:{ctx.region}:{ctx.account}:alarm:{physical}"

    def desired(self, res: Declared, ctx: Context) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, AlarmConfig)
        out: dict[str, Any] = {
            "metric": spec.metric,
            "namespace": spec.namespace,
            "dimensions": dict(spec.dimensions),
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

    async def read(self, ctx: Context, res: Declared) -> Observed | None:
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

    async def create(self, ctx: Context, res: Declared, desired: dict[str, Any]) -> None:
        params = self._params(res, desired, {})
        await ctx.call(
            "cloudwatch", "put_metric_alarm", **params, Tags=tag_list(dict(desired["tags"]))
        )

    async def update(
        self,
        ctx: Context,
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

    async def delete(self, ctx: Context, found: Found) -> None:
        await ctx.call("cloudwatch", "delete_alarms", AlarmNames=[found.physical])

    async def discover(self, ctx: Context) -> list[Found]:
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
