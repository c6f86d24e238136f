"""Custom workers: a user's own coroutine run under the supervisor like any built-in worker.

`[custom.NAME] entrypoint = "package.module:function"` runs `await function(ctx, options)`; the
function should return when `ctx.stop` is set (use `await ctx.sleep(s)`, which wakes on stop).
It gets restarts with backoff, health, the watchdog (with `stall_timeout`) and shared services.
A function marked with `daemon.base.plugins.sends_to` says which options name its outbox
destinations: they are checked like any reference and granted in `awsd iam-policy`.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import TYPE_CHECKING, Any

from daemon.base.plugins import declared_destinations, load_callable
from daemon.config.handlers import OUTBOX_KIND_RESOURCES
from daemon.config.models import Config, CustomWorkerConfig
from daemon.core.iam import Grant, Scope
from daemon.outbox.senders import destination_grants
from daemon.resources.kind import Problem, ResourceRef
from daemon.worker import Worker, WorkerContext, WorkerKind, WorkerSpec, fingerprint

if TYPE_CHECKING:
    from daemon.services import Services


class CustomWorker(Worker):
    def __init__(self, cfg: CustomWorkerConfig) -> None:
        self.cfg = cfg
        self.watched = cfg.stall_timeout is not None
        self.stall_timeout = cfg.stall_timeout

    async def run(self, ctx: WorkerContext) -> None:
        function = load_callable(self.cfg.entrypoint)
        result: Any = function(ctx, dict(self.cfg.options))
        if inspect.isawaitable(result):
            await result


def _build(cfg: CustomWorkerConfig, _services: Services) -> Worker:
    return CustomWorker(cfg)


def specs(config: Config) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            name=f"custom:{name}",
            kind="custom",
            fingerprint=fingerprint(cfg, config.aws),
            build=partial(_build, cfg),
        )
        for name, cfg in config.custom.items()
    ]


def references(config: Config) -> list[ResourceRef]:
    """What custom workers declare they send to (`daemon.base.plugins.sends_to`)."""
    return [
        ResourceRef(
            OUTBOX_KIND_RESOURCES[kind], value, f"custom.{name}.options.{option}", f"custom:{name}"
        )
        for name, worker in config.custom.items()
        for option, kind, value in declared_destinations(worker.entrypoint, worker.options)
    ]


def entrypoint_problems(config: Config) -> list[Problem]:
    problems = []
    for name, worker in config.custom.items():
        try:
            load_callable(worker.entrypoint)
        except ValueError as exc:
            problems.append((f"custom.{name}.entrypoint", str(exc)))
    return problems


def grants(config: Config, scope: Scope) -> list[Grant]:
    """What custom workers declare they send to; anything else a custom worker calls is its
    author's to add to the policy."""
    return [
        grant
        for name, cfg in config.custom.items()
        for _, kind, value in declared_destinations(cfg.entrypoint, cfg.options)
        for grant in destination_grants(kind, f"custom:{name}", [value], scope)
    ]


KIND = WorkerKind(
    name="custom",
    section="custom",
    uses=lambda config: bool(config.custom),
    specs=specs,
    references=references,
    checks=(entrypoint_problems,),
    grants=grants,
    sends=lambda config: bool(config.custom),  # a custom worker may use ctx.services.outbox
)
