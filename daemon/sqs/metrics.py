"""The SQS poller's metrics, per queue (`awsd_sqs_*{queue=...}`)."""

from __future__ import annotations

from typing import Any

from daemon.core.metrics import Registry
from daemon.sqs.receipts import ReceiptMetrics


class PollerMetrics:
    def __init__(self, registry: Registry, queue: str) -> None:
        def counter(name: str, text: str) -> Any:
            return registry.counter(f"awsd_sqs_{name}_total", text, ("queue",)).labels(queue=queue)

        self.received = counter("received", "Messages received")
        self.processed = counter("processed", "Messages handled successfully")
        self.failed = counter("failed", "Messages whose handler failed or timed out")
        self.duplicates = counter("duplicates", "Copies of already handled messages dropped")
        self.skipped = counter("skipped", "Messages needing no handling (s3:TestEvent)")
        self.receive_errors = counter("receive_errors", "Failed ReceiveMessage calls")
        self.receives = counter("receives", "ReceiveMessage calls answered")
        self.empty_receives = counter(
            "empty_receives", "ReceiveMessage calls that returned no message (billed all the same)"
        )
        self.receipts = ReceiptMetrics(
            deleted=counter("deleted", "Messages deleted (acked)"),
            released=counter("released", "Messages made visible again (backoff, shutdown)"),
            extended=counter("visibility_extended", "Visibility extensions by the heartbeat"),
            lost=counter(
                "redelivery_risk", "Messages whose receipt expired: they may be redelivered"
            ),
        )
        self.inflight = registry.gauge(
            "awsd_sqs_inflight",
            "Messages being handled (or waiting for their FIFO group): the max_in_flight slots",
            ("queue",),
        ).labels(queue=queue)
        self.held = registry.gauge(
            "awsd_sqs_held",
            "Messages received and not yet deleted or released (invisible because of us)",
            ("queue",),
        ).labels(queue=queue)
        self.latency = registry.histogram(
            "awsd_sqs_handler_seconds", "Handler time per message", ("queue",)
        ).labels(queue=queue)
        self.last_receive = registry.gauge(
            "awsd_sqs_last_receive_timestamp_seconds",
            "Unix time of the last successful receive",
            ("queue",),
        ).labels(queue=queue)
