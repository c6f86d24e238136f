"""The worker interface: what every long-running part of awsd implements.

A worker is built fresh for every run attempt from its `WorkerSpec`, runs until its stop token is
set, and then finishes its in-flight work before `stop.deadline`. The supervisor owns restarts,
backoff and cancellation; a worker only does its job and reports progress with `ctx.beat()`
(every `ctx.sleep` counts as progress) so a stuck worker can be told from an idle one.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from daemon.base.stop import StopToken

if TYPE_CHECKING:
    from daemon.services import Services


class WorkerContext:
    """What a running worker gets: its name, stop token, logger and the shared services."""

    def __init__(self, name: str, stop: StopToken, services: Services, log: Any) -> None:
        self.name = name
        self.stop = stop
        self.services = services
        self.log = log
        self.last_beat = asyncio.get_running_loop().time()

    def beat(self) -> None:
        """Record progress (the watchdog stops being fed when a watched worker goes quiet)."""
        self.last_beat = asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> bool:
        """Wakeable sleep that counts as progress; False when stop was requested."""
        self.beat()
        done = await self.stop.sleep(seconds)
        self.beat()
        return done

    @property
    def stopping(self) -> bool:
        return self.stop.stopping


class Worker(abc.ABC):
    """Base of every worker."""

    watched: bool = True
    """Whether the watchdog watches this worker for progress (`beat()` / `sleep()`)."""

    stall_timeout: float | None = None
    """Seconds without progress after which it counts as stuck; None: `runtime.stall_timeout`."""

    @abc.abstractmethod
    async def run(self, ctx: WorkerContext) -> None:
        """Work until `ctx.stop` is set, then finish in-flight work and return."""

    def health(self) -> dict[str, Any]:
        """Worker-specific details for /status (last receive time, queue depth, ...)."""
        return {}


@dataclass(frozen=True)
class WorkerSpec:
    """How to build one named worker, and a fingerprint of everything it was built from."""

    name: str
    kind: str
    fingerprint: str
    build: Callable[[Services], Worker] = field(compare=False)


def fingerprint(*parts: BaseModel | dict[str, Any] | str | None) -> str:
    """A stable hash of config parts: equal fingerprints mean a reload leaves the worker alone."""
    dumped = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts]
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
