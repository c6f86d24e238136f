"""Checks that need more than one field or the outside world (importable user code).

They run after the models validated, during `check-config` and before a reload is applied, so a
reload that names a missing module is refused while the old config keeps running.
"""

from __future__ import annotations

from pathlib import Path

from daemon.base.plugins import declared_destinations, load_callable
from daemon.config.handlers import (
    ForwardHandlerConfig,
    HandlerConfig,
    PythonHandlerConfig,
    configured_handlers,
)
from daemon.config.loader import CROSS_CHECKS
from daemon.config.models import Config
from daemon.config.references import REFERENCES, ResourceRef
from daemon.config.resources import ResourceKind


def _custom_entrypoints(config: Config) -> list[tuple[str, str]]:
    problems = []
    for name, worker in config.custom.items():
        try:
            load_callable(worker.entrypoint)
        except ValueError as exc:
            problems.append((f"custom.{name}.entrypoint", str(exc)))
    return problems


def _handler_entrypoints(config: Config) -> list[tuple[str, str]]:
    problems = []
    for path, _, handler in configured_handlers(config):
        if isinstance(handler, PythonHandlerConfig):
            try:
                load_callable(handler.entrypoint)
            except ValueError as exc:
                problems.append((f"{path}.entrypoint", str(exc)))
    return problems


def _reading_topics(config: Config) -> list[tuple[str, str]]:
    if config.sns is None or config.sns.topic is not None:
        return []
    return [
        (f"sns.readings.{name}.topic", "no topic: set it here, or a default in sns.topic")
        for name, reading in config.sns.readings.items()
        if reading.topic is None and reading.stream is None
    ]


CROSS_CHECKS.extend([_custom_entrypoints, _handler_entrypoints, _reading_topics])


def _notify_events(config: Config) -> list[tuple[str, str]]:
    if config.sns is None or not config.sns.notify:
        return []
    from daemon.sns.publishing import notifiable_events  # noqa: PLC0415 - imports the event bus

    known = notifiable_events()
    return [
        (f"sns.notify.{name}", f"no such event; known: {', '.join(sorted(known))}")
        for name in config.sns.notify
        if name not in known
    ]


CROSS_CHECKS.append(_notify_events)


OUTBOX_KIND_RESOURCES: dict[str, ResourceKind] = {
    "sns": "topics",
    "sqs": "queues",
    "kinesis": "streams",
}
"""The resource kind an outbox destination of each kind names."""


def handler_references(handler: HandlerConfig, path: str, user: str) -> list[ResourceRef]:
    """The topic, queue or stream a `forward` handler sends to (for any source's handler)."""
    if not isinstance(handler, ForwardHandlerConfig) or handler.url is not None:
        return []
    field, value = handler.destination
    return [ResourceRef(OUTBOX_KIND_RESOURCES[field], value, f"{path}.{field}", user)]


def _messaging_references(config: Config) -> list[ResourceRef]:
    """The queues the pollers poll, where any handler forwards to, the publisher's topics."""
    refs = []
    for name, poller in config.sqs.items():
        refs.append(ResourceRef("queues", poller.queue, f"sqs.{name}.queue", f"sqs:{name}"))
    for path, worker, handler in configured_handlers(config):
        refs += handler_references(handler, path, worker)
    if config.sns is not None:
        if config.sns.topic:
            refs.append(ResourceRef("topics", config.sns.topic, "sns.topic", "sns"))
        for name, reading in config.sns.readings.items():
            if reading.topic:
                path = f"sns.readings.{name}.topic"
                refs.append(ResourceRef("topics", reading.topic, path, "sns"))
            if reading.stream:
                path = f"sns.readings.{name}.stream"
                refs.append(ResourceRef("streams", reading.stream, path, "sns"))
        for event, topic in config.sns.notify.items():
            refs.append(ResourceRef("topics", topic, f"sns.notify.{event}", "sns"))
    return refs


REFERENCES.append(_messaging_references)


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


def _probe_references(config: Config) -> list[ResourceRef]:
    """The topics probe alerts go to (SMS numbers are no resources)."""
    return [ResourceRef("topics", topic, path, "probes") for path, topic in alert_topics(config)]


def _custom_references(config: Config) -> list[ResourceRef]:
    """What custom workers declare they send to (`daemon.base.plugins.sends_to`)."""
    return [
        ResourceRef(
            OUTBOX_KIND_RESOURCES[kind], value, f"custom.{name}.options.{option}", f"custom:{name}"
        )
        for name, worker in config.custom.items()
        for option, kind, value in declared_destinations(worker.entrypoint, worker.options)
    ]


REFERENCES.extend([_probe_references, _custom_references])


def _probe_tls_files(config: Config) -> list[tuple[str, str]]:
    """A CA file or client certificate that is not there would fail every check of the endpoint;
    say so when the config is loaded instead."""
    problems = []
    for name, endpoint in config.probes.endpoints.items():
        for field in ("ca_file", "client_cert", "client_key"):
            path = getattr(endpoint.tls, field)
            if path and not Path(path).is_file():
                problems.append((f"probes.endpoints.{name}.tls.{field}", f"no such file: {path}"))
    return problems


CROSS_CHECKS.append(_probe_tls_files)
