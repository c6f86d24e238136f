"""Metrics: what CloudWatch costs, and what a metric update costs.

1. API calls per hour for 100 HTTP probes every 10 s plus an SQS poller at 200 messages/s: one
   PutMetricData per data point (what a script calling put_metric_data where the event happens
   does) against awsd's statistic sets, its Values/Counts distributions and EMF. The awsd
   figures come from the real exporter sending to a local moto server, flush by flush; the naive
   figure is the number of data points, counted while generating them.
2. The cost of one update on the hot path (counter, gauge, histogram), in ns, beside
   prometheus_client's (the library most Python services use) in the same run.
"""

from __future__ import annotations

import asyncio
import json
import random
import timeit
from typing import Any

from daemon.config.models import Config
from daemon.core.aws import AwsClients
from daemon.core.local_aws import LocalAws
from daemon.core.metrics import Registry
from daemon.telemetry.export import MetricsExport

PROBES = 100
PROBE_EVERY = 10  # seconds
SQS_RATE = 200  # messages per second
SQS_BATCH = 10  # messages per ReceiveMessage
FLUSH = 60  # seconds, the default metrics.flush_interval
MINUTES = 10  # simulated and really sent; calls per flush are steady, so an hour is x6
PUT_METRIC_DATA_PRICE = 0.01 / 1000  # USD per call (us-east-1)
LOGS_INGEST_PRICE = 0.50 / 1024**3  # USD per byte ingested
HOURS_PER_MONTH = 730


class Workload:
    """The series a probe engine and an SQS poller keep, and one minute of their updates."""

    def __init__(self, registry: Registry) -> None:
        self.rng = random.Random(7)
        duration = registry.histogram("probe_duration_seconds", "Probe duration", ("endpoint",))
        up = registry.gauge("probe_success", "1 when the last probe passed", ("endpoint",))
        checks = registry.counter("awsd_probe_checks_total", "Probes run", ("endpoint",))
        self.probes = [
            (
                duration.labels(endpoint=f"https://site-{i}.example"),
                up.labels(endpoint=f"https://site-{i}.example"),
                checks.labels(endpoint=f"https://site-{i}.example"),
            )
            for i in range(PROBES)
        ]
        queue = {"queue": "orders"}
        self.received = registry.counter(
            "awsd_sqs_messages_received_total", "Messages received", ("queue",)
        ).labels(**queue)
        self.deleted = registry.counter(
            "awsd_sqs_messages_deleted_total", "Messages deleted", ("queue",)
        ).labels(**queue)
        self.handler = registry.histogram(
            "awsd_sqs_handler_seconds", "Handler time per message", ("queue",)
        ).labels(**queue)
        self.receives = registry.counter(
            "awsd_sqs_receive_calls_total", "ReceiveMessage calls", ("queue",)
        ).labels(**queue)

    def minute(self) -> int:
        """One minute of updates; returns how many data points that is."""
        points = 0
        latencies = [self.rng.lognormvariate(-3, 0.5) for _ in range(PROBES)]
        for _ in range(60 // PROBE_EVERY):
            for (duration, up, checks), latency in zip(self.probes, latencies, strict=True):
                duration.observe(latency)
                up.set(1.0)
                checks.inc()
                points += 3
        handler_times = [self.rng.lognormvariate(-6, 1) for _ in range(1000)]
        for i in range(SQS_RATE * 60):
            if i % SQS_BATCH == 0:
                self.receives.inc()
                points += 1
            self.received.inc()
            self.handler.observe(handler_times[i % 1000])
            self.deleted.inc()
            points += 3
        return points


def config(endpoint: str, **metrics: Any) -> Config:
    return Config.model_validate(
        {
            "env": "bench",
            "aws": {"region": "us-east-1"},
            "metrics": {"flush_interval": 3600, **metrics},
        }
    )


async def simulate_hour(
    endpoint: str, minutes: int, **metrics: Any
) -> tuple[int, int, int, list[str]]:
    """Run `minutes` of workload with one flush per minute; return (data points, PutMetricData
    calls, data points sent to CloudWatch, EMF lines)."""
    registry = Registry()
    workload = Workload(registry)
    lines: list[str] = []
    export = MetricsExport(registry, write=lambda doc: lines.append(json.dumps(doc)))
    cfg = config(endpoint, **metrics)
    clients = AwsClients(cfg.aws, local_endpoint=endpoint, metrics=registry)
    calls = registry.counter("awsd_aws_api_calls_total", "", ("service", "operation"))
    sent = registry.counter("awsd_metrics_sent_total", "", ("exporter",))
    points = 0
    try:
        await export.apply(cfg, clients)
        for _ in range(minutes):
            points += workload.minute()
            await export.flush()
        put = int(calls.labels(service="cloudwatch", operation="PutMetricData").value)
        datums = int(sent.labels(exporter="cloudwatch").value)
    finally:
        await export.close(asyncio.get_running_loop().time() + 30)
        await clients.close()
    return points, put, datums, lines


async def api_calls() -> None:
    local = LocalAws()
    endpoint = await local.start()
    try:
        namespace = f"bench-{random.randrange(10**6)}"
        points, stat_calls, stat_sent, _ = await simulate_hour(
            endpoint, MINUTES, namespace=namespace, cloudwatch={"enabled": True}
        )
        _, value_calls, _, _ = await simulate_hour(
            endpoint,
            MINUTES,
            namespace=namespace,
            histograms="values",
            cloudwatch={"enabled": True},
        )
        _, emf_calls, _, lines = await simulate_hour(
            endpoint, MINUTES, namespace=namespace, histograms="values", emf={"enabled": True}
        )
    finally:
        await local.stop()
    scale = 60 // MINUTES
    emf_bytes = sum(len(line) + 1 for line in lines) * scale
    naive = points * scale
    print(
        f"workload: {PROBES} probes every {PROBE_EVERY} s + SQS poller at {SQS_RATE} msg/s, "
        f"flush every {FLUSH} s; {MINUTES} simulated minutes sent to moto, per hour x{scale}"
    )
    print(f"  data points per hour: {naive:,}; series sent per flush: {stat_sent // MINUTES:,}")
    rows = [
        ("naive: PutMetricData per data point", naive, naive * PUT_METRIC_DATA_PRICE),
        ("awsd statistic sets", stat_calls * scale, stat_calls * scale * PUT_METRIC_DATA_PRICE),
        (
            "awsd values (percentiles)",
            value_calls * scale,
            value_calls * scale * PUT_METRIC_DATA_PRICE,
        ),
        ("awsd EMF", emf_calls * scale, emf_bytes * LOGS_INGEST_PRICE),
    ]
    print(f"  {'exporter':40} {'PutMetricData/h':>16} {'USD/month':>12}")
    for name, calls, usd_per_hour in rows:
        print(f"  {name:40} {calls:>16,} {usd_per_hour * HOURS_PER_MONTH:>12,.2f}")
    print(
        f"  EMF: {len(lines) / MINUTES:.0f} lines and {emf_bytes / 60 / 1024:.1f} KiB per flush, "
        f"{emf_bytes / 1024**2:.2f} MiB/h of log ingestion (the USD figure), riding in the "
        "PutLogEvents batches the log shipper sends anyway"
    )
    print(f"  naive / statistic sets: {naive / max(1, stat_calls * scale):,.0f}x the calls")


def hot_path() -> None:
    import prometheus_client as prom

    reg = Registry()
    counter = reg.counter("awsd_c_total", "c", ("queue",)).labels(queue="q")
    gauge = reg.gauge("awsd_g", "g", ("queue",)).labels(queue="q")
    hist = reg.histogram("awsd_h_seconds", "h", ("queue",)).labels(queue="q")
    dist_reg = Registry()
    dist_reg.track_distributions(True)
    dist = dist_reg.histogram("awsd_h_seconds", "h", ("queue",)).labels(queue="q")
    family = reg.counter("awsd_c_total", "c", ("queue",))
    preg = prom.CollectorRegistry()
    pc = prom.Counter("c_total", "c", ["queue"], registry=preg).labels(queue="q")
    pg = prom.Gauge("g", "g", ["queue"], registry=preg).labels(queue="q")
    ph = prom.Histogram("h_seconds", "h", ["queue"], registry=preg).labels(queue="q")
    number = 200_000

    def ns(stmt: str, **names: Any) -> float:
        timer = timeit.Timer(stmt, globals={**names, "v": 0.042})
        empty = timeit.Timer("pass").repeat(7, number)
        best = min(timer.repeat(7, number))
        return max(0.0, best - min(empty)) / number * 1e9

    rows = [
        ("counter.inc()", ns("c.inc()", c=counter), ns("c.inc()", c=pc)),
        ("gauge.set(v)", ns("g.set(v)", g=gauge), ns("g.set(v)", g=pg)),
        ("histogram.observe(v)", ns("h.observe(v)", h=hist), ns("h.observe(v)", h=ph)),
        ("histogram.observe(v), distribution", ns("h.observe(v)", h=dist), None),
        (
            "family.labels(queue=...).inc()  (avoid)",
            ns("f.labels(queue='q').inc()", f=family),
            ns("p.labels(queue='q').inc()", p=prom.Counter("x", "x", ["queue"], registry=preg)),
        ),
    ]
    print("hot path, ns per update (best of 7 x 200k, loop overhead removed):")
    print(f"  {'update':42} {'awsd':>8} {'prometheus_client':>18} {'ratio':>7}")
    for name, ours, theirs in rows:
        other = f"{theirs:>18.0f}" if theirs is not None else f"{'-':>18}"
        ratio = f"{theirs / ours:>6.1f}x" if theirs and ours else f"{'-':>7}"
        print(f"  {name:42} {ours:>8.0f} {other} {ratio}")


def main() -> None:
    hot_path()
    print()
    asyncio.run(api_calls())


if __name__ == "__main__":
    main()
