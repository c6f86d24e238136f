"""`awsd cloudwatch metrics|logs`: read back what awsd sent to CloudWatch, with its own config.

For `make run` above all: the embedded moto endpoint speaks the protocols of the botocore awsd
installs, so these commands work where an AWS CLI built on a newer botocore cannot (recent ones
talk JSON to CloudWatch, which moto does not). With `aws.local` they use the endpoint the running
daemon uses and never start one; elsewhere they read the real account, like the AWS CLI would.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import math
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.core.aws import AwsClients


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from daemon.cli.common import add_config_args  # noqa: PLC0415

    parser = sub.add_parser("cloudwatch", help="read back the metrics and logs awsd sent")
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    metrics = what.add_parser("metrics", help="metrics in the namespace, with recent statistics")
    add_config_args(metrics)
    metrics.add_argument("--minutes", type=float, default=15.0, help="how far back (15)")
    metrics.add_argument("--name", default="*", help="metric name or pattern (awsd_process_*)")
    metrics.set_defaults(func=cmd_metrics)
    logs = what.add_parser("logs", help="the latest events in the daemon's log stream")
    add_config_args(logs)
    logs.add_argument("--limit", type=int, default=20, help="how many events (20)")
    logs.set_defaults(func=cmd_logs)


def cmd_metrics(args: argparse.Namespace) -> int:
    return _run(args, lambda config, clients: _metrics(config, clients, args.minutes, args.name))


def cmd_logs(args: argparse.Namespace) -> int:
    return _run(args, lambda config, clients: _logs(config, clients, args.limit))


def _run(args: argparse.Namespace, body: Any) -> int:
    from daemon.cli.common import config_failure, load_from_args, run_async  # noqa: PLC0415
    from daemon.config import ConfigError  # noqa: PLC0415

    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)

    async def main() -> int:
        from daemon.base.awserrors import describe_error  # noqa: PLC0415
        from daemon.core.aws import AwsClients  # noqa: PLC0415

        endpoint = await _local_endpoint(loaded.config)
        if loaded.config.aws.local and endpoint is None:
            return 1
        clients = AwsClients(loaded.config.aws, local_endpoint=endpoint)
        try:
            return int(await body(loaded.config, clients))
        except Exception as exc:  # noqa: BLE001 - one line for the operator, no traceback
            print(f"awsd: {describe_error(exc)}", file=sys.stderr)
            return 1
        finally:
            await clients.close()

    return run_async(main())


async def _local_endpoint(config: Config) -> str | None:
    """AWS_ENDPOINT_URL, else the endpoint the running daemon of this config uses (wherever it
    listens), else a moto server on `aws.local_port`."""
    if not config.aws.local:
        return None
    from daemon.cli.common import running_aws_endpoint  # noqa: PLC0415
    from daemon.core.local_aws import answers  # noqa: PLC0415

    if os.environ.get("AWS_ENDPOINT_URL"):
        return os.environ["AWS_ENDPOINT_URL"]
    port = config.aws.local_port
    for endpoint in (running_aws_endpoint(config), f"http://127.0.0.1:{port}" if port else None):
        if endpoint and await answers(endpoint):
            return endpoint
    print(
        f"awsd: no local AWS endpoint answers (the daemon of this config is not running, and "
        f"nothing answers on port {config.aws.local_port}); start it first (make run), or set "
        "AWS_ENDPOINT_URL",
        file=sys.stderr,
    )
    return None


async def _metrics(config: Config, clients: AwsClients, minutes: float, pattern: str) -> int:
    cloudwatch = await clients.client("cloudwatch")
    namespace = config.metrics.namespace
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    token: str | None = None
    while True:
        page = await cloudwatch.list_metrics(
            Namespace=namespace, **({"NextToken": token} if token else {})
        )
        for metric in page["Metrics"]:
            key = (
                metric["MetricName"],
                tuple((d["Name"], d["Value"]) for d in metric["Dimensions"]),
            )
            if fnmatch.fnmatchcase(metric["MetricName"], pattern) and key not in seen:
                seen.add(key)
                found.append(metric)
        token = page.get("NextToken")
        if not token:
            break
    if not found:
        print(f"no metrics in namespace {namespace!r} matching {pattern!r}")
        return 0
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes + 1)
    period = max(60, math.ceil((end - start).total_seconds() / 60) * 60)
    rows = await asyncio.gather(
        *(_statistics(cloudwatch, namespace, m, start=start, end=end, period=period) for m in found)
    )
    print(f"# namespace {namespace}: {len(found)} metrics, last {minutes:g} minutes")
    print(f"{'metric':44} {'samples':>9} {'sum':>12} {'min':>10} {'max':>10}  dimensions")
    for metric, stats in sorted(rows, key=lambda r: (r[0]["MetricName"], str(r[0]["Dimensions"]))):
        dims = ",".join(f"{d['Name']}={d['Value']}" for d in metric["Dimensions"])
        if stats is None:
            print(f"{metric['MetricName']:44} {'-':>9} {'-':>12} {'-':>10} {'-':>10}  {dims}")
            continue
        print(
            f"{metric['MetricName']:44} {stats['SampleCount']:>9g} {stats['Sum']:>12.6g} "
            f"{stats['Minimum']:>10.4g} {stats['Maximum']:>10.4g}  {dims}"
        )
    return 0


async def _statistics(
    cloudwatch: Any,
    namespace: str,
    metric: dict[str, Any],
    *,
    start: datetime,
    end: datetime,
    period: int,
) -> tuple[dict[str, Any], dict[str, float] | None]:
    result = await cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric["MetricName"],
        Dimensions=metric["Dimensions"],
        StartTime=start,
        EndTime=end,
        Period=period,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum"],
    )
    points = result["Datapoints"]
    if not points:
        return metric, None
    return metric, {
        "SampleCount": sum(p["SampleCount"] for p in points),
        "Sum": sum(p["Sum"] for p in points),
        "Minimum": min(p["Minimum"] for p in points),
        "Maximum": max(p["Maximum"] for p in points),
    }


async def _logs(config: Config, clients: AwsClients, limit: int) -> int:
    from daemon.core import identity  # noqa: PLC0415

    cfg = config.log.cloudwatch
    who = await identity.resolve(
        config.env,
        ask_imds=not config.aws.local and identity.needs_instance_id(cfg.log_group, cfg.log_stream),
    )
    group, stream = who.expand(cfg.log_group), who.expand(cfg.log_stream)
    logs = await clients.client("logs")
    result = await logs.get_log_events(
        logGroupName=group, logStreamName=stream, limit=limit, startFromHead=False
    )
    print(f"# {group} / {stream}: the latest {len(result['events'])} events")
    for event in result["events"]:
        print(event["message"])
    return 0
