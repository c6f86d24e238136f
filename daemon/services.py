"""Shared services: what workers use besides their own config.

Built once per config by the daemon and handed to every worker it builds. Process-lifetime parts
(metrics, event bus) survive reloads so counters never reset; per-config parts (AWS clients) are
rebuilt when their section changes, and closed once the workers using them have stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from daemon.base.files import private_dir
from daemon.config.models import Config
from daemon.core.aws import AwsClients
from daemon.core.events import EventBus
from daemon.core.metrics import Registry
from daemon.core.storage import StateHealth
from daemon.core.targets import Targets
from daemon.outbox import Outbox
from daemon.resources.kind import ResourceRef


class Services:
    """Everything a worker may use, for one configuration."""

    def __init__(
        self,
        config: Config,
        *,
        metrics: Registry,
        events: EventBus,
        clients: AwsClients,
        outbox: Outbox,
        references: Sequence[ResourceRef] = (),
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.events = events
        self.clients = clients
        self.outbox = outbox
        """The process's durable outbox (process-lifetime: it outlives reloads)."""
        self.storage: StateHealth = outbox.health
        """The health of the state on disk: every store reports its writes here."""
        self.targets = Targets(config, clients)
        """What the topics and queues named in this config are called in AWS."""
        self.references = tuple(references)
        """The resources the workers name (`daemon.worker.Catalog.worker_references`): the
        reconciler shows who uses what and never prunes what is used."""

    @property
    def state_dir(self) -> Path:
        """The durable state directory (created 0700 on first use)."""
        return private_dir(self.config.runtime.state_dir)

    async def close(self) -> None:
        """Close what belongs to this config (the outbox is closed by the daemon, last)."""
        await self.clients.close()
