"""The CloudWatch Logs shipper: the PutLogEvents rules at their exact edges, and shipping to the
moto server (creation, retention, order, throttling, bounded buffer, shutdown)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from daemon.config.models import Config
from daemon.core.aws import AwsClients
from daemon.core.metrics import Registry
from daemon.telemetry.log_batch import (
    DAY_MS,
    EVENT_OVERHEAD,
    MAX_AGE_MS,
    MAX_BATCH_BYTES,
    MAX_FUTURE_MS,
    MAX_SPAN_MS,
    TRUNCATED,
    LogEvent,
    make_event,
    take_batch,
)
from daemon.telemetry.log_shipper import LogShipper
from tests.conftest import ConfigFactory
from tests.support.aws_front import AwsFront
from tests.support.proxy import FaultProxy

NOW = 1_800_000_000_000


def events(*timestamps: int, size: int = 100) -> deque[LogEvent]:
    return deque(LogEvent(ts, "x" * (size - EVENT_OVERHEAD), size) for ts in timestamps)


def drain(buffer: deque[LogEvent], now: int = NOW) -> list[list[LogEvent]]:
    batches = []
    while buffer:
        batch = take_batch(buffer, now)
        if batch.events:
            batches.append(batch.events)
    return batches


class TestBatchRules:
    def test_at_most_10000_events_per_batch(self):
        buffer = events(*([NOW] * 20_001), size=30)
        assert [len(b) for b in drain(buffer)] == [10_000, 10_000, 1]

    def test_bytes_count_26_per_event_and_stop_at_exactly_1_mib(self):
        # 1024 events of 1024 bytes (998 of message + 26) fill 1,048,576 bytes exactly.
        buffer = events(*([NOW] * 1025), size=1024)
        first, second = drain(buffer)
        assert len(first) == 1024 and sum(e.size for e in first) == MAX_BATCH_BYTES
        assert sum(len(e.message.encode()) + EVENT_OVERHEAD for e in first) == MAX_BATCH_BYTES
        assert len(second) == 1
        # One byte more in the first event and the 1024th no longer fits.
        buffer = deque([LogEvent(NOW, "y" * 999, 1025), *events(*([NOW] * 1023), size=1024)])
        assert [len(b) for b in drain(buffer)] == [1023, 1]

    def test_a_batch_spans_at_most_24_hours(self):
        start = NOW - 2 * DAY_MS
        buffer = events(start, start + MAX_SPAN_MS, start + MAX_SPAN_MS + 1)
        batches = drain(buffer)
        assert [[e.timestamp - start for e in b] for b in batches] == [
            [0, MAX_SPAN_MS],
            [MAX_SPAN_MS + 1],
        ]

    def test_the_span_counts_events_out_of_order(self):
        start = NOW - 2 * DAY_MS
        buffer = events(start + 10, start + MAX_SPAN_MS + 10, start)
        assert [len(b) for b in drain(buffer)] == [2, 1]

    def test_batches_are_sorted_and_keep_the_logged_order_for_equal_times(self):
        buffer = deque(
            [
                LogEvent(NOW + 5, "c", 27),
                LogEvent(NOW, "a", 27),
                LogEvent(NOW + 5, "d", 27),
                LogEvent(NOW, "b", 27),
            ]
        )
        (batch,) = drain(buffer)
        assert [e.message for e in batch] == ["a", "b", "c", "d"]

    def test_events_too_old_or_too_far_ahead_are_dropped_and_counted(self):
        oldest, newest = NOW - MAX_AGE_MS, NOW + MAX_FUTURE_MS
        batch = take_batch(events(oldest - 1, oldest), NOW)
        assert [e.timestamp for e in batch.events] == [oldest]
        assert (batch.too_old, batch.too_new) == (1, 0)
        batch = take_batch(events(NOW, newest, newest + 1), NOW)
        assert [e.timestamp for e in batch.events] == [NOW, newest]
        assert (batch.too_old, batch.too_new) == (0, 1)
        # A log group with one day of retention refuses anything older than a day.
        buffer = events(NOW - DAY_MS - 1, NOW - DAY_MS)
        batch = take_batch(buffer, NOW, DAY_MS)
        assert (len(batch.events), batch.too_old) == (1, 1)

    def test_oversized_events_are_cut_at_a_character_boundary_with_a_marker(self):
        message = "é" * 200_000  # 2 bytes each
        event, cut = make_event(NOW, message, 262_144)
        assert cut and event.message.endswith(TRUNCATED)
        assert event.size == len(event.message.encode()) + EVENT_OVERHEAD <= 262_144
        assert event.size >= 262_144 - 1  # at most the half character is lost
        small, cut = make_event(NOW, "ok", 262_144)
        assert not cut and small.size == 2 + EVENT_OVERHEAD
        exact, cut = make_event(NOW, "z" * (1024 - EVENT_OVERHEAD), 1024)
        assert not cut and exact.size == 1024


def shipper_config(configs: ConfigFactory, group: str, **cloudwatch: Any) -> Config:
    settings = {"enabled": True, "log_group": group, "log_stream": "s-{env}", **cloudwatch}
    return Config.model_validate(configs.data({"log": {"cloudwatch": settings}}))


def log_event(event: str, level: str = "info", **fields: Any) -> dict[str, Any]:
    return {"event": event, "level": level, "timestamp": "2026-01-01T00:00:00Z", **fields}


class Shipping:
    """A shipper applied to a config, closed at the end."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = Registry()
        self.shipper = LogShipper(self.registry)
        self.clients = AwsClients(config.aws, metrics=self.registry)

    async def __aenter__(self) -> LogShipper:
        await self.shipper.apply(self.config, self.clients)
        return self.shipper

    async def __aexit__(self, *exc: object) -> None:
        await self.shipper.close(asyncio.get_running_loop().time() + 5)
        await self.clients.close()

    def dropped(self, reason: str) -> float:
        family = self.registry.counter("awsd_logs_dropped_total", "", ("reason",))
        return family.labels(reason=reason).value

    def calls(self, operation: str) -> float:
        family = self.registry.counter("awsd_aws_api_calls_total", "", ("service", "operation"))
        return family.labels(service="logs", operation=operation).value


def read_back(boto: Callable[[str], Any], group: str, stream: str) -> list[dict[str, Any]]:
    logs = boto("logs")
    out, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = logs.get_log_events(
            logGroupName=group, logStreamName=stream, startFromHead=True, **kwargs
        )
        out += page["events"]
        if not page["events"] or page["nextForwardToken"] == token:
            return out
        token = page["nextForwardToken"]


class TestShipping:
    async def test_events_reach_a_created_group_with_retention_and_tag(
        self, configs: ConfigFactory, boto: Callable[[str], Any]
    ):
        group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
        run = Shipping(shipper_config(configs, group, retention_days=7, level="info"))
        async with run as shipper:
            for i in range(5):
                shipper.sink(log_event("hello", n=i))
            shipper.sink(log_event("too chatty", level="debug"))
            shipper.sink(log_event("metrics", level="debug", _aws={"x": 1}))  # EMF always goes
            assert await shipper.ship(10)
            shipper.sink(log_event("after", worker="custom:a"))
        shipped = [json.loads(e["message"]) for e in read_back(boto, group, "s-test")]
        assert [e["event"] for e in shipped] == ["hello"] * 5 + ["metrics", "after"]
        assert [e.get("n") for e in shipped[:5]] == [0, 1, 2, 3, 4]
        assert shipped[0]["level"] == "info"  # JSON with the usual keys first
        (described,) = boto("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        assert described["retentionInDays"] == 7
        tags = boto("logs").list_tags_log_group(logGroupName=group)["tags"]
        assert tags == {"awsd:env": "test"}
        assert run.calls("PutLogEvents") == 2  # one ship, and the close

    async def test_exactly_10000_events_go_in_one_call_and_10001_in_two(
        self, configs: ConfigFactory, boto: Callable[[str], Any]
    ):
        group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
        run = Shipping(shipper_config(configs, group))
        async with run as shipper:
            for i in range(10_000):
                shipper.sink(log_event("bulk", n=i))
            assert await shipper.ship(30)
            assert run.calls("PutLogEvents") == 1
            for i in range(10_001):
                shipper.sink(log_event("bulk", n=i))
            assert await shipper.ship(30)
            assert run.calls("PutLogEvents") == 3
        assert len(read_back(boto, group, "s-test")) == 20_001

    async def test_put_log_events_is_gzipped_and_throttling_is_retried(
        self, configs: ConfigFactory, aws_front: AwsFront, boto: Callable[[str], Any]
    ):
        group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
        configs.moto_endpoint = aws_front.url
        config = shipper_config(configs, group)
        config = config.model_copy(
            update={"aws": config.aws.model_copy(update={"max_attempts": 1})}
        )
        aws_front.fail("PutLogEvents", "ThrottlingException")
        aws_front.fail("PutLogEvents", "ServiceUnavailableException", status=500)
        async with Shipping(config) as shipper:
            for i in range(50):
                shipper.sink(log_event("retry me", n=i))
            assert await shipper.ship(30)
        puts = aws_front.calls("PutLogEvents")
        assert [p.status for p in puts] == [400, 500, 0]
        assert all(p.content_encoding == "gzip" and p.body_bytes < p.raw_bytes for p in puts)
        assert len(read_back(boto, group, "s-test")) == 50

    async def test_a_full_buffer_drops_the_oldest_events_and_counts_them(
        self, configs: ConfigFactory, boto: Callable[[str], Any]
    ):
        group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
        run = Shipping(shipper_config(configs, group, buffer_bytes=65_536))
        async with run as shipper:
            for i in range(1000):
                shipper.sink(log_event("filler", n=i, pad="p" * 100))
            assert shipper.buffered_bytes <= 65_536
            kept = len(shipper.buffer)
            assert run.dropped("buffer_full") == 1000 - kept
            assert await shipper.ship(10)
        shipped = [json.loads(e["message"])["n"] for e in read_back(boto, group, "s-test")]
        assert shipped == list(range(1000 - kept, 1000))  # the newest survive, in order

    async def test_connection_errors_are_retried_until_the_endpoint_is_back(
        self, configs: ConfigFactory, fault_proxy: FaultProxy, boto: Callable[[str], Any]
    ):
        configs.moto_endpoint = fault_proxy.url
        group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
        run = Shipping(shipper_config(configs, group))
        async with run as shipper:
            shipper.sink(log_event("before the outage"))
            assert await shipper.ship(10)
            fault_proxy.set_mode("refuse")
            for i in range(20):
                shipper.sink(log_event("during the outage", n=i))
            shipping = asyncio.create_task(shipper.ship(30))
            await asyncio.sleep(0.5)  # some attempts meet the refused connection
            assert not shipping.done()  # still trying, nothing given up
            fault_proxy.set_mode("pass")
            assert await shipping
            assert run.dropped("shutdown") == 0 and run.dropped("buffer_full") == 0
        shipped = read_back(boto, group, "s-test")
        assert [json.loads(e["message"]).get("n") for e in shipped[1:]] == list(range(20))

    async def test_the_shutdown_flush_with_the_endpoint_down_gives_up_at_the_deadline(
        self, configs: ConfigFactory, fault_proxy: FaultProxy
    ):
        configs.moto_endpoint = fault_proxy.url
        group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
        run = Shipping(shipper_config(configs, group))
        shipper = await run.__aenter__()
        shipper.sink(log_event("first"))
        assert await shipper.ship(10)
        fault_proxy.set_mode("blackhole")
        for i in range(20):
            shipper.sink(log_event("lost", n=i))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        async with asyncio.timeout(30):  # a guard against a hang, not a measurement
            await shipper.close(deadline)
        assert not shipper.buffer
        assert run.dropped("shutdown") == 20
        await run.clients.close()

    async def test_events_logged_by_the_shipper_itself_are_not_shipped(
        self, configs: ConfigFactory
    ):
        group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
        async with Shipping(shipper_config(configs, group)) as shipper:
            from daemon.telemetry import log_shipper as module

            token = module._shipping.set(True)
            try:
                shipper.sink(log_event("botocore chatter", logger="botocore.endpoint"))
            finally:
                module._shipping.reset(token)
            assert not shipper.buffer
            shipper.sink(log_event("worker line"))
            assert len(shipper.buffer) == 1

    async def test_old_events_are_dropped_before_sending_and_counted(
        self, configs: ConfigFactory, boto: Callable[[str], Any]
    ):
        group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
        run = Shipping(shipper_config(configs, group, retention_days=1))
        async with run as shipper:
            now = time.time_ns() // 1_000_000
            shipper.buffer.extend(
                [
                    LogEvent(now - 2 * DAY_MS, "stale", 31),
                    LogEvent(now + 3 * 3600 * 1000, "from the future", 41),
                    LogEvent(now, "fresh", 31),
                ]
            )
            shipper.buffered_bytes = 103
            assert await shipper.ship(10)
        assert [e["message"] for e in read_back(boto, group, "s-test")] == ["fresh"]
        assert (run.dropped("too_old"), run.dropped("too_new")) == (1, 1)


async def test_reloads_turn_shipping_on_and_off_and_keep_the_buffer(configs: ConfigFactory):
    from daemon.core import logs

    group = f"/awsd/test-{uuid.uuid4().hex[:8]}"
    on = shipper_config(configs, group, flush_interval=300)
    off = Config.model_validate(configs.data())
    run = Shipping(off)
    shipper = await run.__aenter__()
    try:
        assert shipper.sink not in logs._sinks and not shipper.enabled
        await shipper.apply(on, run.clients)
        assert shipper.sink in logs._sinks
        shipper.sink(log_event("kept"))
        moved = shipper_config(configs, group + "-b", flush_interval=300)
        await shipper.apply(moved, run.clients)  # another group: same buffer, new destination
        assert len(shipper.buffer) == 1
        await shipper.apply(off, run.clients)
        assert shipper.sink not in logs._sinks
        assert not shipper.buffer and run.dropped("disabled") == 1
    finally:
        await run.__aexit__()
