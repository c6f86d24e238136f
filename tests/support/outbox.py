"""The outbox in tests: a real outbox (in memory or on a file), and its delivery worker running
under a real supervisor against an endpoint (the moto server, or a fault proxy or AWS front
before it), configured like the daemon would be for the senders that read the config."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.config.models import AwsConfig, Config, RuntimeConfig
from daemon.config.outbox import OutboxConfig
from daemon.core.aws import AwsClients
from daemon.core.events import EventBus
from daemon.core.metrics import Registry
from daemon.outbox import Outbox
from daemon.runtime.supervisor import Supervisor
from daemon.services import Services
from daemon.worker import WorkerSpec
from daemon.workers.outbox import OutboxWorker
from tests.support.observe import metric

RUNTIME = RuntimeConfig(state_dir="/tmp")


def make_outbox(path: str = ":memory:", **cfg: Any) -> Outbox:
    metrics = Registry()
    return Outbox(OutboxConfig(path=path, **cfg), path, metrics=metrics, events=EventBus(metrics))


class Delivery:
    """The outbox worker running under a real supervisor, against `endpoint`. `metrics` holds
    what the senders count; `stop()` closes the outbox too."""

    def __init__(self, outbox: Outbox, endpoint: str, config: Config | None = None) -> None:
        self.outbox = outbox
        self.metrics = Registry()
        # No botocore retries: what retries is the outbox's own backoff.
        self.clients = AwsClients(
            AwsConfig(
                region="us-east-1",
                endpoint_url=endpoint,
                max_attempts=1,
                retry_mode="standard",
                connect_timeout=1,
                read_timeout=3,
            )
        )
        self.services = Services(
            config or Config(env="test"),
            metrics=self.metrics,
            events=outbox.events,
            clients=self.clients,
            outbox=outbox,
        )
        self.supervisor = Supervisor(Registry())

    async def start(self) -> Delivery:
        spec = WorkerSpec("outbox", "outbox", "1", OutboxWorker)
        loop = asyncio.get_running_loop()
        await self.supervisor.apply([spec], self.services, RUNTIME, loop.time() + 5)
        return self

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.metrics, name, **labels)

    async def stop(self) -> None:
        await self.supervisor.stop_all(asyncio.get_running_loop().time() + 5)
        await self.clients.close()
        await self.outbox.close()


StartDelivery = Callable[..., Awaitable[Delivery]]
"""The `delivery` fixture: `await delivery(outbox, endpoint=None, config=None)`."""
