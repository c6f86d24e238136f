"""In-process harness for the messaging workers: the real workers under a real supervisor, with
real AWS clients on the moto server, a real (in-memory) outbox, and a log capture; and the SQS/SNS
arranging and reading the messaging tests share (subscribe a queue, receive until N arrived)."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from typing import Any

from daemon.config.models import Config, LogConfig
from daemon.core.aws import AwsClients
from daemon.core.events import EventBus
from daemon.core.logs import add_sink, configure_logging, remove_sink
from daemon.core.metrics import Registry
from daemon.outbox import Outbox
from daemon.runtime.supervisor import Supervisor
from daemon.services import Services
from daemon.workers import CATALOG


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Logs:
    """Every log event of the process while it is attached (after redaction)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def attach(self) -> Logs:
        configure_logging(LogConfig(format="json", level="debug"), stream=io.StringIO())
        add_sink(self._sink)
        return self

    def detach(self) -> None:
        remove_sink(self._sink)

    def _sink(self, event: dict[str, Any]) -> None:
        self.events.append(dict(event))

    def matching(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        ]


class Harness:
    """Runs the workers a config asks for, in this process."""

    def __init__(self, endpoint: str, tmp_path: Any) -> None:
        self.endpoint = endpoint
        self.tmp_path = tmp_path
        self.metrics = Registry()
        self.events = EventBus(self.metrics)
        self.supervisor = Supervisor(self.metrics)
        self.outbox: Outbox | None = None
        self.clients: AwsClients | None = None
        self.services: Services | None = None

    def config(self, **sections: Any) -> Config:
        data: dict[str, Any] = {
            "env": "test",
            "aws": {
                "region": "us-east-1",
                "endpoint_url": self.endpoint,
                "max_attempts": 1,
                "connect_timeout": 1.0,
                "read_timeout": 5.0,
            },
            "runtime": {"state_dir": str(self.tmp_path / "state"), "shutdown_timeout": 10.0},
            "outbox": {"path": ":memory:", "retry_initial": 0.1, "retry_max": 0.5},
        }
        data.update(sections)
        return Config.model_validate(data)

    async def start(self, config: Config) -> Services:
        if self.services is None:
            self.outbox = Outbox(
                config.outbox, ":memory:", metrics=self.metrics, events=self.events
            )
            self.clients = AwsClients(config.aws, metrics=self.metrics)
        assert self.outbox is not None and self.clients is not None
        self.services = Services(
            config,
            metrics=self.metrics,
            events=self.events,
            clients=self.clients,
            outbox=self.outbox,
        )
        loop = asyncio.get_running_loop()
        await self.supervisor.apply(
            CATALOG.specs(config), self.services, config.runtime, loop.time() + 10
        )
        return self.services

    def worker(self, name: str) -> Any:
        return self.supervisor.runners[name].worker

    async def stop(self, timeout: float = 10.0) -> None:
        await self.supervisor.stop_all(asyncio.get_running_loop().time() + timeout)
        if self.clients is not None:
            await self.clients.close()
        if self.outbox is not None:
            await self.outbox.close()


def queue_attributes(sqs: Any, url: str) -> dict[str, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {
        k: int(v)
        for k, v in attrs.items()
        if k.startswith("ApproximateNumberOfMessages") and str(v).isdigit()
    }


def subscribe_queue(boto: Callable[[str], Any], topic_arn: str, url: str, *, raw: bool) -> None:
    """Subscribe an SQS queue to an SNS topic: raw delivery gives the message alone, otherwise
    the SNS JSON envelope."""
    attrs = boto("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    boto("sns").subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=attrs["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": str(raw).lower()},
    )


def receive_messages(
    boto: Callable[[str], Any], queue: str, expect: int, *, tries: int = 40
) -> list[dict[str, Any]]:
    """Receive (with their attributes) and delete the messages of `queue` (a URL or a name) until
    `expect` arrived or `tries` long polls of a second went by. It blocks: call it once the
    sender is done, or in a thread."""
    sqs = boto("sqs")
    url = queue if "://" in queue else sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    got: list[dict[str, Any]] = []
    for _ in range(tries):
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        for message in answer.get("Messages", []):
            got.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if len(got) >= expect:
            break
    return got


def receive_bodies(
    boto: Callable[[str], Any], queue: str, expect: int, *, tries: int = 40
) -> list[str]:
    """The bodies of `receive_messages`."""
    return [m["Body"] for m in receive_messages(boto, queue, expect, tries=tries)]
