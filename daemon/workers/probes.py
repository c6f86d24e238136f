"""The probe worker (`[probes]`, worker `probes`): one worker checks every endpoint.

The engine is `daemon.probes.engine.ProbesWorker` (alert delivery in `daemon.probes.delivery`);
this module says what the kind contributes: the alert topics it names, the files it needs, the
IAM actions it needs, its outbox use (alerts).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config.models import Config
from daemon.core.iam import Grant, Scope
from daemon.outbox.senders import destination_grants
from daemon.resources.kind import Problem, ResourceRef
from daemon.worker import Worker, WorkerKind, WorkerSpec, fingerprint

if TYPE_CHECKING:
    from daemon.services import Services


def _build(config: Config, services: Services) -> Worker:
    from daemon.probes.engine import ProbesWorker  # noqa: PLC0415 - loaded when a config probes

    return ProbesWorker(config, services)


def specs(config: Config) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            name="probes",
            kind="probes",
            fingerprint=fingerprint(config.probes, config.env, config.runtime.state_dir),
            build=lambda services: _build(config, services),
        )
    ]


def alert_topics(config: Config) -> list[tuple[str, str]]:
    """(config path, topic) for each alert topic the probes use: the default's once, and each
    endpoint's own where it differs from the default. (An endpoint whose alerts are disabled
    still counts: "probe host offline" notices go to every topic.)"""
    probes = config.probes
    default = probes.defaults.alert.topic
    found = [("probes.defaults.alert.topic", default)] if default else []
    for name, endpoint in probes.endpoints.items():
        topic = endpoint.alert.topic
        if topic and topic != default:
            found.append((f"probes.endpoints.{name}.alert.topic", topic))
    return found


def references(config: Config) -> list[ResourceRef]:
    """The topics probe alerts go to (SMS numbers are no resources)."""
    return [ResourceRef("topics", topic, path, "probes") for path, topic in alert_topics(config)]


def tls_file_problems(config: Config) -> list[Problem]:
    """A CA file or client certificate that is not there would fail every check of the endpoint;
    say so when the config is loaded instead."""
    problems = []
    for name, endpoint in config.probes.endpoints.items():
        for field in ("ca_file", "client_cert", "client_key"):
            path = getattr(endpoint.tls, field)
            if path and not Path(path).is_file():
                problems.append((f"probes.endpoints.{name}.tls.{field}", f"no such file: {path}"))
    return problems


def alerts_anywhere(config: Config) -> bool:
    return any(
        ep.alert.enabled and (ep.alert.topic or ep.alert.sms)
        for ep in config.probes.endpoints.values()
    )


def grants(config: Config, scope: Scope) -> list[Grant]:
    """sns:Publish on the alert topics, and for SMS on `*`: AWS has no resource (and no condition
    key) for a phone number, so publishing SMS needs sns:Publish on any resource, which also
    allows publishing to any topic of the account."""
    probes = config.probes
    topics = [topic for _, topic in alert_topics(config)]
    numbers = sorted({n for ep in probes.endpoints.values() for n in ep.alert.sms})
    return destination_grants("sns", "probes", topics, scope) + destination_grants(
        "sms", "probes", numbers, scope
    )


KIND = WorkerKind(
    name="probes",
    section="probes",
    uses=lambda config: bool(config.probes.endpoints),
    specs=specs,
    references=references,
    checks=(tls_file_problems,),
    grants=grants,
    sends=alerts_anywhere,
)
