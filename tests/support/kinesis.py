"""Helpers for the Kinesis tests: streams on the moto server, an in-process reader under a real
supervisor, and handlers that record what they saw (loaded by entrypoint, like a user's)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

from daemon.config.models import Config, RuntimeConfig
from daemon.config.outbox import OutboxConfig
from daemon.core.aws import AwsClients
from daemon.core.events import EventBus
from daemon.core.metrics import Registry
from daemon.handlers import Record
from daemon.kinesis.reader import KinesisReader
from daemon.outbox import Outbox
from daemon.runtime.supervisor import Supervisor
from daemon.services import Services
from daemon.workers import kinesis_reader
from tests.support.observe import metric

SEEN: dict[str, list[Record]] = defaultdict(list)
"""Records the `collect` handler saw, by stream name."""
GATES: dict[str, asyncio.Event] = {}
"""A stream whose gate is here and not set stalls in `stall` until it is set."""
FAIL_FIRST: dict[str, int] = {}
"""`flaky` fails this many calls per stream before it succeeds."""


async def collect(record: Record) -> None:
    SEEN[record.meta["stream"]].append(record)


async def stall(record: Record) -> None:
    gate = GATES.get(record.meta["stream"])
    if gate is not None:
        await gate.wait()
    SEEN[record.meta["stream"]].append(record)


async def flaky(record: Record) -> None:
    stream = record.meta["stream"]
    if FAIL_FIRST.get(stream, 0) > 0:
        FAIL_FIRST[stream] -= 1
        raise RuntimeError("flaky handler says no")
    SEEN[record.meta["stream"]].append(record)


def stream_name(prefix: str = "ks") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_stream(kinesis: Any, name: str, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )


def put(kinesis: Any, name: str, records: list[tuple[str, bytes]]) -> None:
    """Put `(partition_key, data)` records in order (PutRecords keeps order per call)."""
    for start in range(0, len(records), 500):
        chunk = records[start : start + 500]
        kinesis.put_records(
            StreamName=name, Records=[{"PartitionKey": k, "Data": d} for k, d in chunk]
        )


def keyed(count: int, keys: int = 8, prefix: str = "r", start: int = 0) -> list[tuple[str, bytes]]:
    """`count` records over `keys` partition keys, numbered from `start`: `r key=k3 n=17`."""
    return [
        (f"k{n % keys}", f"{prefix} key=k{n % keys} n={n}".encode())
        for n in range(start, start + count)
    ]


def per_key_order_holds(texts: list[str]) -> bool:
    last: dict[str, int] = {}
    for text in texts:
        fields = dict(part.split("=") for part in text.split()[1:])
        key, n = fields["key"], int(fields["n"])
        if n < last.get(key, -1):
            return False
        last[key] = n
    return True


class Reader:
    """A `kinesis` reader worker running in this process under a real supervisor."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = Config.model_validate(config)
        self.metrics = Registry()
        self.events = EventBus(self.metrics)
        self.clients = AwsClients(self.config.aws, metrics=self.metrics)
        self.outbox = Outbox(
            OutboxConfig(path=":memory:"), ":memory:", metrics=self.metrics, events=self.events
        )
        self.services = Services(
            self.config,
            metrics=self.metrics,
            events=self.events,
            clients=self.clients,
            outbox=self.outbox,
        )
        self.supervisor = Supervisor(self.metrics)

    async def start(self) -> Reader:
        loop = asyncio.get_running_loop()
        await self.supervisor.apply(
            kinesis_reader.specs(self.config),
            self.services,
            RuntimeConfig(state_dir=self.config.runtime.state_dir),
            loop.time() + 5,
        )
        return self

    def worker(self, name: str) -> KinesisReader:
        runner = self.supervisor.runners[f"kinesis:{name}"]
        worker = runner.worker
        assert isinstance(worker, KinesisReader)
        return worker

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.metrics, name, **labels)

    async def stop(self) -> None:
        await self.supervisor.stop_all(asyncio.get_running_loop().time() + 10)
        await self.clients.close()
        await self.outbox.close()


def reader_config(
    tmp_path: Any, endpoint: str, readers: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "env": "test",
        "aws": {"region": "us-east-1", "endpoint_url": endpoint, "max_attempts": 2},
        "runtime": {"state_dir": str(tmp_path / "state")},
        "kinesis": {"readers": readers},
        **extra,
    }


SLOW_FIRST: set[str] = set()
"""Streams whose first `slow` call hangs (until cancelled)."""
CANCELLED: list[str] = []


async def slow(record: Record) -> None:
    stream = record.meta["stream"]
    if stream in SLOW_FIRST:
        SLOW_FIRST.discard(stream)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            CANCELLED.append(record.id)
            raise
    SEEN[stream].append(record)
