"""Metrics: the registry's collectors and distributions, snapshots, and the three exporters
(CloudWatch PutMetricData against the moto server, EMF against the published structure,
Prometheus text against prometheus_client's parser)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jsonschema
import pytest
from botocore.serialize import create_serializer
from prometheus_client.parser import text_string_to_metric_families

from daemon.config.models import Config
from daemon.core.aws import AwsClients
from daemon.core.metrics import Registry
from daemon.core.metrics.prometheus import render
from daemon.core.metrics.snapshot import Point, Selector, Snapshots, unit_for
from daemon.telemetry.cloudwatch import (
    MAX_BYTES,
    MAX_DATUMS,
    Entry,
    datum_size,
    dimensions_for,
    take_batch,
    to_datum,
)
from daemon.telemetry.emf import documents
from daemon.telemetry.export import MetricsExport
from tests.conftest import ConfigFactory
from tests.support.aws_front import AwsFront
from tests.support.proxy import FaultProxy

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def config_for(configs: ConfigFactory, *, max_attempts: int = 2, **metrics: Any) -> Config:
    data = configs.data({"metrics": metrics, "aws": {"max_attempts": max_attempts}})
    return Config.model_validate(data)


@contextlib.asynccontextmanager
async def exporting(
    config: Config, registry: Registry, **options: Any
) -> AsyncIterator[MetricsExport]:
    """A `MetricsExport` applied to `config`; closed at the end (its final flush included), and
    its AWS clients with it."""
    export = MetricsExport(registry, **options)
    clients = AwsClients(config.aws, metrics=registry)
    try:
        await export.apply(config, clients)
        yield export
    finally:
        await export.close(asyncio.get_running_loop().time() + 5)
        await clients.close()


def statistics(cloudwatch: Any, namespace: str, name: str, **dims: str) -> dict[str, float]:
    end = datetime.now(UTC) + timedelta(minutes=5)
    points = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=end - timedelta(hours=1),
        EndTime=end,
        Period=3600,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum"],
    )["Datapoints"]
    assert len(points) == 1, points
    return points[0]


class TestRegistry:
    def test_collectors_run_before_every_export_and_a_broken_one_is_skipped(self):
        reg = Registry()
        depth = reg.gauge("awsd_outbox_depth", "messages waiting").labels()
        queue = [1, 2, 3]
        reg.add_collector(lambda: depth.set(len(queue)))
        reg.add_collector(lambda: 1 / 0)
        assert "awsd_outbox_depth 3.0" in render(reg)
        queue.append(4)
        points = Snapshots(reg).take()
        assert [p.value for p in points if p.name == "awsd_outbox_depth"] == [4.0]

    def test_distribution_values_stay_in_range_and_merge_down_to_the_limit(self):
        reg = Registry()
        hist = reg.histogram("awsd_x_seconds", "x").labels()
        reg.track_distributions(True)
        values = [0.0, -2.0] + [0.001 * 1.07**i for i in range(300)]
        for value in values:
            hist.observe(value)
        window = hist.drain_window()
        assert window is not None and window.count == len(values)
        for limit in (150, 100, 10):
            pairs = window.values(limit)
            assert len(pairs) <= limit
            assert sum(c for _, c in pairs) == len(values)
            assert all(window.minimum <= v <= window.maximum for v, _ in pairs)
            assert [v for v, _ in pairs] == sorted(v for v, _ in pairs)
        fine = dict(window.values(1000))
        assert fine[0.0] == 1 and fine[-2.0 if -2.0 in fine else min(fine)] == 1
        # Each bin's value is within 5 % of the values in it.
        assert all(any(abs(v - x) <= 0.05 * abs(x) for v in fine) for x in values if x > 0)

    def test_tracking_distributions_reaches_existing_and_new_histograms(self):
        reg = Registry()
        old = reg.histogram("a", "a").labels()
        reg.track_distributions(True)
        new = reg.histogram("b", "b").labels()
        for hist in (old, new):
            hist.observe(1.0)
            window = hist.drain_window()
            assert window is not None and sum(window.bins.values()) == 1
        reg.track_distributions(False)
        old.observe(1.0)
        window = old.drain_window()
        assert window is not None and not window.bins


class TestSnapshots:
    def test_counters_report_the_increase_gauges_the_value_histograms_the_window(self):
        reg = Registry()
        counter = reg.counter("awsd_msgs_total", "m", ("queue",)).labels(queue="q")
        gauge = reg.gauge("awsd_depth", "d").labels()
        hist = reg.histogram("awsd_lat_seconds", "l").labels()
        snaps = Snapshots(reg)
        counter.inc(5)
        gauge.set(7)
        hist.observe(2.0)
        first = {p.name: p for p in snaps.take()}
        assert first["awsd_msgs_total"].value == 5
        assert first["awsd_msgs_total"].labels == (("queue", "q"),)
        assert first["awsd_depth"].value == 7
        assert first["awsd_lat_seconds"].window is not None
        counter.inc(2)
        second = {p.name: p for p in snaps.take()}
        assert second["awsd_msgs_total"].value == 2
        assert "awsd_lat_seconds" not in second  # nothing observed: nothing to send

    def test_include_and_exclude_choose_what_is_sent_but_excluded_windows_still_drain(self):
        reg = Registry()
        reg.counter("awsd_a_total", "a").labels().inc()
        hist = reg.histogram("awsd_b_seconds", "b").labels()
        hist.observe(1.0)
        select = Selector(["awsd_*"], ["awsd_b_*"])
        assert [p.name for p in Snapshots(reg).take(select)] == ["awsd_a_total"]
        assert hist.drain_window() is None

    @pytest.mark.parametrize(
        ("name", "unit"),
        [
            ("awsd_probe_latency_seconds", "Seconds"),
            ("awsd_logs_shipped_bytes_total", "Bytes"),
            ("awsd_worker_restarts_total", "Count"),
            ("awsd_cpu_seconds_total", "Seconds"),
            ("awsd_disk_percent", "Percent"),
            ("awsd_workers", "None"),
        ],
    )
    def test_units_follow_the_name_suffix(self, name: str, unit: str):
        assert unit_for(name) == unit


class TestPutMetricDataRules:
    def entries(self, count: int, **dims: str) -> deque[Entry]:
        out: deque[Entry] = deque()
        for i in range(count):
            point = Point("awsd_x", "gauge", (("n", str(i)),), float(i))
            datum = to_datum(point, dimensions=dims, timestamp=NOW, resolution=60, values=False)
            out.append(Entry(datum, datum_size(datum)))
        return out

    def test_a_request_carries_at_most_1000_metrics(self):
        buffer = self.entries(2500)
        sizes = []
        while buffer:
            sizes.append(len(take_batch(buffer)))
        assert sizes == [1000, 1000, 500]
        assert MAX_DATUMS == 1000

    def test_a_request_body_stays_under_1_mb_as_botocore_serializes_it(self):
        buffer = self.entries(1000, padding="x" * 1000, more="y" * 1000)
        batch = take_batch(buffer)
        assert 0 < len(batch) < 1000 and buffer  # the bytes limit cut it, not the count
        body = serialized_size([e.datum for e in batch])
        assert body <= MAX_BYTES
        # The size estimate is an upper bound, and a tight one.
        assert body <= sum(e.size for e in batch) + 400 < body * 1.1
        # One more data point would have crossed the limit.
        nxt = buffer[0]
        assert sum(e.size for e in batch) + 400 + nxt.size > MAX_BYTES

    def test_statistic_set_and_values_datums(self):
        reg = Registry()
        reg.track_distributions(True)
        hist = reg.histogram("awsd_lat_seconds", "l").labels()
        for v in (1.0, 2.0, 3.0, 4.0):
            hist.observe(v)
        window = hist.drain_window()
        point = Point("awsd_lat_seconds", "histogram", (), window=window)
        stats = to_datum(point, dimensions={}, timestamp=NOW, resolution=1, values=False)
        assert stats["StatisticValues"] == {
            "SampleCount": 4.0,
            "Sum": 10.0,
            "Minimum": 1.0,
            "Maximum": 4.0,
        }
        assert (stats["Unit"], stats["StorageResolution"]) == ("Seconds", 1)
        dist = to_datum(point, dimensions={}, timestamp=NOW, resolution=60, values=True)
        assert sum(dist["Counts"]) == 4 and len(dist["Values"]) == len(dist["Counts"]) <= 150

    def test_dimensions_are_made_valid_for_cloudwatch(self):
        labels = (("queue", ""), ("endpoint", "café\n"), *((f"l{i}", "v") for i in range(40)))
        dims = dimensions_for({"environment": "prod", "queue": "default"}, labels)
        assert len(dims) == 30
        assert dims["queue"] == "none"  # a label wins over a default; empty is not allowed
        assert dims["endpoint"] == "caf??"
        assert dims["environment"] == "prod"


def serialized_size(data: list[dict[str, Any]]) -> int:
    import botocore.session

    model = botocore.session.get_session().get_service_model("cloudwatch")
    op = model.operation_model("PutMetricData")
    request = create_serializer("query").serialize_to_request(
        {"Namespace": "awsd", "MetricData": data}, op
    )
    return len(urlencode(request["body"]).encode())


class TestCloudWatchExport:
    async def flush_once(
        self, configs: ConfigFactory, registry: Registry, max_attempts: int = 2, **metrics: Any
    ) -> None:
        config = config_for(
            configs,
            cloudwatch={"enabled": True},
            flush_interval=3600,
            max_attempts=max_attempts,
            **metrics,
        )
        async with exporting(config, registry) as export:
            await export.flush()
            assert not export.cloudwatch.buffer

    async def test_metrics_land_in_cloudwatch_and_statistics_aggregate(
        self, configs: ConfigFactory, boto: Callable[[str], Any]
    ):
        namespace = f"test-{uuid.uuid4().hex[:8]}"
        reg = Registry()
        hist = reg.histogram("awsd_probe_latency_seconds", "l", ("endpoint",)).labels(endpoint="a")
        counter = reg.counter("awsd_messages_total", "m", ("queue",)).labels(queue="orders")
        gauge = reg.gauge("awsd_outbox_depth", "d").labels()
        for value in (1.0, 2.0, 3.0, 4.0):
            hist.observe(value)
        counter.inc(5)
        gauge.set(7)
        config = config_for(
            configs, namespace=namespace, cloudwatch={"enabled": True}, flush_interval=3600
        )
        async with exporting(config, reg) as export:
            await export.flush()
            hist.observe(10.0)
            counter.inc(2)
            await export.flush()
        cw = boto("cloudwatch")
        host = {
            "environment": "test",
            "host": __import__("daemon.core.identity").core.identity.hostname(),
        }
        lat = statistics(cw, namespace, "awsd_probe_latency_seconds", **host, endpoint="a")
        assert (lat["SampleCount"], lat["Sum"], lat["Minimum"], lat["Maximum"]) == (
            5.0,
            20.0,
            1.0,
            10.0,
        )
        msgs = statistics(cw, namespace, "awsd_messages_total", **host, queue="orders")
        assert msgs["Sum"] == 7.0  # increases, not running totals
        depth = statistics(cw, namespace, "awsd_outbox_depth", **host)
        assert depth["Maximum"] == 7.0
        # Three flushes (the last at close), one call each.
        calls = reg.counter("awsd_aws_api_calls_total", "", ("service", "operation"))
        assert calls.labels(service="cloudwatch", operation="PutMetricData").value == 3

    async def test_values_mode_sends_distributions_cloudwatch_can_aggregate(
        self, configs: ConfigFactory, boto: Callable[[str], Any]
    ):
        namespace = f"test-{uuid.uuid4().hex[:8]}"
        reg = Registry()
        hist = reg.histogram("awsd_handler_seconds", "h").labels()
        await self.flush_once(
            configs, reg, namespace=namespace, histograms="values", dimensions={}
        )  # turns distributions on; nothing observed yet
        for i in range(1, 101):
            hist.observe(i / 100)
        await self.flush_once(configs, reg, namespace=namespace, histograms="values", dimensions={})
        stats = statistics(boto("cloudwatch"), namespace, "awsd_handler_seconds")
        assert stats["SampleCount"] == 100.0
        assert math.isclose(stats["Sum"], sum(i / 100 for i in range(1, 101)), rel_tol=0.05)
        assert stats["Minimum"] == 0.01 and stats["Maximum"] == 1.0

    async def test_2500_series_go_in_three_gzipped_calls(
        self, configs: ConfigFactory, aws_front: AwsFront
    ):
        reg = Registry()
        family = reg.histogram("awsd_probe_latency_seconds", "l", ("endpoint",))
        for i in range(2500):
            family.labels(endpoint=f"https://site-{i}.example").observe(0.1)
        aws_front.stub("PutMetricData", times=3)
        configs.moto_endpoint = aws_front.url
        await self.flush_once(configs, reg, include=["awsd_probe_*"])
        calls = aws_front.calls("PutMetricData")
        assert len(calls) == 3  # the final flush at close has nothing new to send
        assert all(c.content_encoding == "gzip" and c.body_bytes < c.raw_bytes for c in calls)
        assert all(c.raw_bytes <= MAX_BYTES for c in calls)
        sent = reg.counter("awsd_metrics_sent_total", "", ("exporter",))
        assert sent.labels(exporter="cloudwatch").value == 2500

    async def test_throttling_and_5xx_are_retried_until_the_data_lands(
        self, configs: ConfigFactory, aws_front: AwsFront, boto: Callable[[str], Any]
    ):
        namespace = f"test-{uuid.uuid4().hex[:8]}"
        reg = Registry()
        reg.counter("awsd_retried_total", "r").labels().inc(3)
        aws_front.fail("PutMetricData", "Throttling")
        aws_front.fail("PutMetricData", "ServiceUnavailable", status=503)
        configs.moto_endpoint = aws_front.url
        # botocore's own retries off: what retries here is awsd's backoff.
        await self.flush_once(configs, reg, namespace=namespace, dimensions={}, max_attempts=1)
        answers = [c.status for c in aws_front.calls("PutMetricData")]
        # The final flush at close sends the counter's (zero) increase.
        assert answers == [400, 503, 0, 0]
        assert statistics(boto("cloudwatch"), namespace, "awsd_retried_total")["Sum"] == 3.0

    async def test_credential_errors_keep_the_data_and_rejected_batches_are_dropped(
        self, configs: ConfigFactory, aws_front: AwsFront
    ):
        reg = Registry()
        reg.gauge("awsd_g", "g").labels().set(1)
        configs.moto_endpoint = aws_front.url
        config = config_for(
            configs,
            include=["awsd_g"],
            flush_interval=3600,
            cloudwatch={"enabled": True},
            max_attempts=1,
        )
        async with exporting(config, reg) as export:
            dropped = reg.counter("awsd_metrics_dropped_total", "", ("exporter", "reason"))
            aws_front.fail("PutMetricData", "AccessDenied", status=403)
            await export.flush()
            assert len(export.cloudwatch.buffer) == 1  # an IAM fix away: kept
            assert "AccessDenied" in (export.describe()["last_error"] or "")
            aws_front.fail("PutMetricData", "InvalidParameterValue")
            await export.flush()
            assert not export.cloudwatch.buffer  # CloudWatch refuses the data: dropped
            assert dropped.labels(exporter="cloudwatch", reason="rejected").value == 2
            await export.flush()
            assert export.describe()["last_error"] is None

    async def test_unreachable_endpoint_keeps_data_bounded_until_it_returns(
        self, configs: ConfigFactory, fault_proxy: FaultProxy, boto: Callable[[str], Any]
    ):
        namespace = f"test-{uuid.uuid4().hex[:8]}"
        reg = Registry()
        family = reg.gauge("awsd_g", "g", ("n",))
        for i in range(60):
            family.labels(n=str(i)).set(i)
        configs.moto_endpoint = fault_proxy.url
        config = config_for(
            configs,
            namespace=namespace,
            dimensions={},
            include=["awsd_g"],
            flush_interval=3600,
            cloudwatch={"enabled": True, "buffer_size": 1000, "retry_budget": 0.3},
        )
        async with exporting(config, reg) as export:
            fault_proxy.set_mode("refuse")
            export.cloudwatch.buffer_size = 100  # below the configurable minimum, for speed
            await export.flush()
            await export.flush()  # 120 data points for a buffer of 100
            assert len(export.cloudwatch.buffer) == 100
            dropped = reg.counter("awsd_metrics_dropped_total", "", ("exporter", "reason"))
            assert dropped.labels(exporter="cloudwatch", reason="buffer_full").value == 20
            assert export.describe()["last_error"]
            fault_proxy.set_mode("pass")
            await export.flush(budget=30)  # 160 for 100 places: the oldest 60 go, 100 are sent
            assert not export.cloudwatch.buffer
            assert dropped.labels(exporter="cloudwatch", reason="buffer_full").value == 80
        sent = reg.counter("awsd_metrics_sent_total", "", ("exporter",))
        assert sent.labels(exporter="cloudwatch").value == 100 + 60  # third flush + close
        listed = boto("cloudwatch").list_metrics(Namespace=namespace)["Metrics"]
        assert len({m["Dimensions"][0]["Value"] for m in listed}) == 60


EMF_SCHEMA = {
    # The published structure (CloudWatch_Embedded_Metric_Format_Specification): 30 dimensions
    # per DimensionSet, 100 MetricDefinitions per directive, StorageResolution 1 or 60; values
    # are numbers, arrays of at most 100 numbers, or the statistic set / histogram objects
    # AWS's EMF libraries write.
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer"},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 255},
                            "Dimensions": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 255},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1},
                                        "Unit": {
                                            "enum": [
                                                "Seconds",
                                                "Bytes",
                                                "Count",
                                                "Percent",
                                                "None",
                                            ]
                                        },
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}
EMF_VALUE = {
    "oneOf": [
        {"type": "number"},
        {"type": "array", "maxItems": 100, "items": {"type": "number"}},
        {
            "type": "object",
            "required": ["Max", "Min", "Count", "Sum"],
            "properties": {
                "Max": {"type": "number"},
                "Min": {"type": "number"},
                "Count": {"type": "number"},
                "Sum": {"type": "number"},
                "Values": {"type": "array", "maxItems": 100, "items": {"type": "number"}},
                "Counts": {"type": "array", "maxItems": 100, "items": {"type": "number"}},
            },
        },
    ]
}


def check_emf(doc: dict[str, Any]) -> None:
    """The published structure, and what a schema cannot say: targets exist with the right
    types."""
    jsonschema.validate(doc, EMF_SCHEMA)
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(doc[key], str), key
        for metric in directive["Metrics"]:
            jsonschema.validate(doc[metric["Name"]], EMF_VALUE)
            value = doc[metric["Name"]]
            if isinstance(value, dict) and "Values" in value:
                assert len(value["Values"]) == len(value["Counts"])
                assert sum(value["Counts"]) == value["Count"]


class TestEmf:
    def points(self) -> list[Point]:
        reg = Registry()
        reg.track_distributions(True)
        for i in range(250):
            reg.counter(f"awsd_c{i}_total", "c", ("queue",)).labels(queue="orders").inc(i)
        hist = reg.histogram("awsd_lat_seconds", "l", ("queue",)).labels(queue="orders")
        for i in range(1, 1001):
            hist.observe(i / 1000)
        reg.gauge("awsd_g", "g", ("endpoint",)).labels(endpoint="https://a").set(1.5)
        reg.gauge("awsd_bad", "nan").labels().set(math.nan)
        return Snapshots(reg).take()

    def test_documents_follow_the_published_structure(self):
        docs = documents(
            self.points(),
            namespace="awsd",
            dimensions={"environment": "prod", "host": "pi-1"},
            timestamp_ms=1_700_000_000_000,
            resolution=lambda name: 1 if name == "awsd_g" else 60,
            values=True,
        )
        for doc in docs:
            check_emf(doc)
        by_dims = {}
        for doc in docs:
            (dims,) = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
            by_dims.setdefault(tuple(dims), []).append(doc)
        orders = by_dims[("environment", "host", "queue")]
        # 250 counters and a histogram with one set of dimension values: 100 + 100 + 51.
        assert sorted(len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in orders) == [
            51,
            100,
            100,
        ]
        assert all(d["queue"] == "orders" and d["environment"] == "prod" for d in orders)
        lat = next(d["awsd_lat_seconds"] for d in orders if "awsd_lat_seconds" in d)
        assert (lat["Count"], lat["Min"], lat["Max"]) == (1000, 0.001, 1.0)
        assert math.isclose(lat["Sum"], 500.5)
        (gauge,) = by_dims[("environment", "host", "endpoint")]
        assert gauge["awsd_g"] == 1.5
        assert gauge["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
            {"Name": "awsd_g", "Unit": "None", "StorageResolution": 1}
        ]
        assert not any("awsd_bad" in d for d in docs)  # NaN never leaves

    def test_at_most_30_dimensions_and_reserved_names_renamed(self):
        reg = Registry()
        fits = (*(f"l{i:02d}" for i in range(25)), "event", "level")
        reg.counter("awsd_fits_total", "f", fits).labels(**{k: "v" for k in fits}).inc()
        wide = tuple(f"w{i:02d}" for i in range(40))
        reg.counter("awsd_wide_total", "w", wide).labels(**{k: "v" for k in wide}).inc()
        docs = documents(
            Snapshots(reg).take(),
            namespace="awsd",
            dimensions={"environment": "prod", "host": "pi-1", "timestamp": "t"},
            timestamp_ms=1,
            resolution=lambda _: 60,
            values=False,
        )
        for doc in docs:
            check_emf(doc)
        by_metric = {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]: d["_aws"]["CloudWatchMetrics"][
                0
            ]["Dimensions"][0]
            for d in docs
        }
        fits_dims = by_metric["awsd_fits_total"]
        assert len(fits_dims) == 30
        # The log line's own members keep their meaning: dimensions with those names are renamed.
        assert {"event_", "level_", "timestamp_"} <= set(fits_dims)
        assert not {"event", "level", "timestamp"} & set(fits_dims)
        assert len(by_metric["awsd_wide_total"]) == 30  # CloudWatch's limit: the rest is cut

    def test_statistic_sets_without_values(self):
        docs = documents(
            self.points(),
            namespace="awsd",
            dimensions={},
            timestamp_ms=1,
            resolution=lambda _: 60,
            values=False,
        )
        lat = next(d["awsd_lat_seconds"] for d in docs if "awsd_lat_seconds" in d)
        assert set(lat) == {"Max", "Min", "Count", "Sum"}

    async def test_emf_makes_no_put_metric_data_calls(self, configs: ConfigFactory):
        reg = Registry()
        reg.counter("awsd_things_total", "t").labels().inc(4)
        written: list[dict[str, Any]] = []
        config = config_for(configs, emf={"enabled": True}, flush_interval=3600)
        async with exporting(config, reg, write=written.append) as export:
            await export.flush()
        assert written and all(check_emf(d) is None for d in written)
        assert any(d.get("awsd_things_total") == 4 for d in written)
        calls = reg.counter("awsd_aws_api_calls_total", "", ("service", "operation"))
        assert not [s for s, c in calls.series() if s["service"] == "cloudwatch" and c.value]


class TestPrometheus:
    def test_text_format_parses_with_prometheus_client(self):
        reg = Registry()
        reg.counter("awsd_sent_total", "Sent\nmessages \\ all", ("queue",)).labels(
            queue='we"ird\\q\nx'
        ).inc(3)
        reg.gauge("awsd_depth", "Depth").labels().set(-1.5)
        hist = reg.histogram("awsd_lat_seconds", "Latency", ("endpoint",), buckets=(0.1, 1.0))
        child = hist.labels(endpoint="a")
        for value in (0.05, 0.1, 0.5, 7.0):
            child.observe(value)
        reg.gauge("awsd_empty", "No series yet", ("x",))
        families = {f.name: f for f in text_string_to_metric_families(render(reg))}
        sent = families["awsd_sent"]
        assert sent.type == "counter" and sent.documentation == "Sent\nmessages \\ all"
        (sample,) = [s for s in sent.samples if s.name == "awsd_sent_total"]
        assert sample.labels == {"queue": 'we"ird\\q\nx'} and sample.value == 3
        assert families["awsd_depth"].samples[0].value == -1.5
        lat = {(s.name, s.labels.get("le")): s.value for s in families["awsd_lat_seconds"].samples}
        assert lat[("awsd_lat_seconds_bucket", "0.1")] == 2  # le is inclusive
        assert lat[("awsd_lat_seconds_bucket", "1.0")] == 3
        assert lat[("awsd_lat_seconds_bucket", "+Inf")] == 4
        assert lat[("awsd_lat_seconds_count", None)] == 4
        assert math.isclose(lat[("awsd_lat_seconds_sum", None)], 7.65)
        assert families["awsd_empty"].samples == []


async def test_reloads_start_stop_and_retune_the_flusher(configs: ConfigFactory):
    reg = Registry()
    reg.gauge("awsd_g", "g").labels().set(1)
    off = config_for(configs)
    cloudwatch = config_for(configs, cloudwatch={"enabled": True}, flush_interval=3600)
    emf_only = config_for(configs, emf={"enabled": True}, flush_interval=1800, histograms="values")
    written: list[dict[str, Any]] = []
    export = MetricsExport(reg, write=written.append)
    clients = AwsClients(off.aws, metrics=reg)
    try:
        await export.apply(off, clients)
        assert not export.active and export._task is None
        await export.apply(cloudwatch, clients)
        assert export.active and export._task is not None and not reg.distributions
        export.cloudwatch.buffer.append(object())  # type: ignore[arg-type]
        await export.apply(emf_only, clients)  # PutMetricData off: its buffer goes, counted
        assert not export.cloudwatch.buffer and reg.distributions
        dropped = reg.counter("awsd_metrics_dropped_total", "", ("exporter", "reason"))
        assert dropped.labels(exporter="cloudwatch", reason="disabled").value == 1
        await export.flush()
        assert written
        await export.apply(off, clients)
        assert export._task is None and not reg.distributions
    finally:
        await export.close(asyncio.get_running_loop().time() + 5)
        await clients.close()
