"""The worker interface: what every long-running part of awsd implements, and what a kind of
worker contributes to the rest of the daemon.

A worker is built fresh for every run attempt from its `WorkerSpec`, runs until its stop token is
set, and then finishes its in-flight work before `stop.deadline`. The supervisor owns restarts,
backoff and cancellation; a worker only does its job and reports progress with `ctx.beat()`
(every `ctx.sleep` counts as progress) so a stuck worker can be told from an idle one.

A `WorkerKind` is one kind's whole contribution (its specs, references, checks, IAM grants,
outbox use, startup preparation); the `Catalog` of them is listed statically in
`daemon/workers/__init__.py` and handed to the runtime and the command line.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from daemon.base.stop import StopToken
from daemon.config.loader import LoadedConfig, load_config
from daemon.config.models import Config
from daemon.core.iam import Grant, Scope, policy, services_granted
from daemon.resources.kind import Problem, ResourceRef

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


# --- what a kind of worker contributes ----------------------------------------------------------


def _no_references(_config: Config) -> list[ResourceRef]:
    return []


def _no_grants(_config: Config, _scope: Scope) -> list[Grant]:
    return []


def _never(_config: Config) -> bool:
    return False


@dataclass(frozen=True, kw_only=True)
class WorkerKind:
    """Everything one kind of worker contributes, in one object: each module of
    `daemon/workers/` exports one (`KIND`), and `daemon/workers/__init__.py` lists them."""

    name: str
    """The kind (`sqs`): `WorkerSpec.kind` of its workers."""
    section: str
    """The config section it reads (`sqs`, `kinesis.readers`), for people and docs."""
    uses: Callable[[Config], bool]
    """Whether a config asks for any worker of this kind."""
    specs: Callable[[Config], list[WorkerSpec]]
    """The workers of a config that uses the kind (each built fresh per run attempt)."""
    references: Callable[[Config], list[ResourceRef]] = _no_references
    """The declared resources its workers name (checked, shown in plans, scoped in IAM)."""
    checks: tuple[Callable[[Config], list[Problem]], ...] = ()
    """Checks of its section that need more than one field (or the outside world)."""
    grants: Callable[[Config, Scope], list[Grant]] = _no_grants
    """The IAM permissions its calls need, scoped to what the config names."""
    sends: Callable[[Config], bool] = _never
    """Whether it puts messages into the outbox (the delivery worker then runs)."""
    prepare: Callable[[Services], Awaitable[None]] | None = None
    """Run once at startup while every worker waits (bounded by the kind itself)."""


Contributor = Callable[[Config, Scope], list[Grant]]


class Catalog:
    """The worker kinds of the daemon, and what follows from them for one config: which
    workers run, what a config must satisfy, what IAM must allow.

    Built once, statically, in `daemon/workers/__init__.py`; the runtime and the command line
    receive it, so nothing below `daemon.workers` needs to know which kinds exist."""

    def __init__(
        self, kinds: Sequence[WorkerKind], *, service_grants: Sequence[Contributor] = ()
    ) -> None:
        self.kinds = tuple(kinds)
        self.service_grants = tuple(service_grants)
        """What the process-lifetime services (metrics export, log shipping) need from IAM."""

    def used(self, config: Config) -> list[WorkerKind]:
        return [kind for kind in self.kinds if kind.uses(config)]

    # --- the config ---------------------------------------------------------------------------

    def references(self, config: Config) -> list[ResourceRef]:
        """Every resource reference in a config: between resources, and by the workers."""
        return config.resources.references() + self.worker_references(config)

    def worker_references(self, config: Config) -> list[ResourceRef]:
        return [ref for kind in self.kinds for ref in kind.references(config)]

    def checks(self, config: Config) -> list[Problem]:
        return [
            problem for kind in self.kinds for check in kind.checks for problem in check(config)
        ]

    def load(self, path: str | Path, environ: Mapping[str, str] = os.environ) -> LoadedConfig:
        """Load and validate a config with every worker kind's references and checks."""
        return load_config(path, environ, references=self.worker_references, checks=(self.checks,))

    # --- the workers --------------------------------------------------------------------------

    def specs(self, config: Config) -> list[WorkerSpec]:
        """The workers a config asks for, fingerprinted with how the resources they name are
        named in AWS (a reload renaming them restarts exactly those workers)."""
        specs = [spec for kind in self.used(config) for spec in kind.specs(config)]
        names = [spec.name for spec in specs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"duplicate worker names: {', '.join(twice)}")
        naming = self._naming(config)
        return [
            replace(spec, fingerprint=fingerprint(spec.fingerprint, naming[spec.name]))
            if spec.name in naming
            else spec
            for spec in specs
        ]

    def _naming(self, config: Config) -> dict[str, str]:
        res = config.resources
        by_user: dict[str, list[tuple[str, str, str]]] = {}
        for ref in self.references(config):
            if ref.external:
                continue
            declared = res.of_kind(ref.kind).get(ref.value)
            template = (declared.name if declared is not None else None) or res.name_template
            by_user.setdefault(ref.user, []).append((ref.kind, ref.value, template))
        return {
            user: fingerprint({"names": sorted(items), "env": config.env})
            for user, items in by_user.items()
        }

    def sends(self, config: Config) -> bool:
        """Whether anything in a config puts messages into the outbox."""
        return any(kind.sends(config) for kind in self.kinds)

    async def prepare(self, services: Services) -> None:
        """Every startup preparation, in order (each bounds its own time, none may fail)."""
        for kind in self.used(services.config):
            if kind.prepare is not None:
                await kind.prepare(services)

    # --- IAM ----------------------------------------------------------------------------------

    def contributors(self, config: Config) -> list[Contributor]:
        return [kind.grants for kind in self.used(config)] + list(self.service_grants)

    def policy(
        self, config: Config, *, account: str = "*", region: str | None = None
    ) -> dict[str, Any]:
        """The least-privilege IAM policy of a config (`awsd iam-policy`)."""
        return policy(config, self.contributors(config), account=account, region=region)

    def aws_services(self, config: Config) -> set[str]:
        """The AWS services a config calls (botocore names), from what it is granted."""
        return services_granted(config, self.contributors(config))
