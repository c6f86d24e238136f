"""The SNS publisher (`[sns]`, worker `sns`): readings and events in, durable outbox out.

The engine is `daemon.sns.publisher.SnsPublisher` (the request and ingest formats in
`daemon.sns.publishing`); this module says what the kind contributes: the topics and streams it
names, its checks, the IAM actions it needs, its outbox use.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from daemon.config.messaging import SnsPublisherConfig
from daemon.config.models import Config
from daemon.core.iam import Grant, Scope
from daemon.outbox.senders import destination_grants
from daemon.resources.kind import Problem, ResourceRef
from daemon.worker import Worker, WorkerKind, WorkerSpec, fingerprint

if TYPE_CHECKING:
    from daemon.services import Services


def _build(cfg: SnsPublisherConfig, env: str, services: Services) -> Worker:
    from daemon.sns.publisher import SnsPublisher  # noqa: PLC0415 - loaded when a config publishes

    return SnsPublisher(cfg, env, services)


def specs(config: Config) -> list[WorkerSpec]:
    assert config.sns is not None
    return [
        WorkerSpec(
            name="sns",
            kind="sns",
            fingerprint=fingerprint(config.sns, config.env),
            build=partial(_build, config.sns, config.env),
        )
    ]


def references(config: Config) -> list[ResourceRef]:
    """The default topic, each reading's topic or stream, and the topics events go to."""
    sns = config.sns
    if sns is None:
        return []
    refs = [ResourceRef("topics", sns.topic, "sns.topic", "sns")] if sns.topic else []
    for name, reading in sns.readings.items():
        if reading.topic:
            refs.append(ResourceRef("topics", reading.topic, f"sns.readings.{name}.topic", "sns"))
        if reading.stream:
            path = f"sns.readings.{name}.stream"
            refs.append(ResourceRef("streams", reading.stream, path, "sns"))
    for event, topic in sns.notify.items():
        refs.append(ResourceRef("topics", topic, f"sns.notify.{event}", "sns"))
    return refs


def reading_topics(config: Config) -> list[Problem]:
    """A reading with no topic of its own needs the default one (or a stream)."""
    if config.sns is None or config.sns.topic is not None:
        return []
    return [
        (f"sns.readings.{name}.topic", "no topic: set it here, or a default in sns.topic")
        for name, reading in config.sns.readings.items()
        if reading.topic is None and reading.stream is None
    ]


def notify_events(config: Config) -> list[Problem]:
    """`notify` names events that exist and have a text form."""
    if config.sns is None or not config.sns.notify:
        return []
    from daemon.sns.publishing import notifiable_events  # noqa: PLC0415 - only when notifying

    known = notifiable_events()
    return [
        (f"sns.notify.{name}", f"no such event; known: {', '.join(sorted(known))}")
        for name in config.sns.notify
        if name not in known
    ]


def grants(config: Config, scope: Scope) -> list[Grant]:
    """Publish on the topics the config names (the default topic, readings' topics, `notify`).
    Least privilege leaves out what the config cannot tell: `awsd publish --topic` to another
    topic, `--phone` (SMS), and PublishRequest events naming other topics or phones are denied
    until the policy grants them by hand (docs/reconciler.md "IAM policy generation")."""
    if config.sns is None:
        return []
    topics = {r.topic for r in config.sns.readings.values() if r.topic}
    topics.update(config.sns.notify.values())
    if config.sns.topic:  # also the default of `awsd publish` and of events
        topics.add(config.sns.topic)
    streams = sorted({r.stream for r in config.sns.readings.values() if r.stream})
    found = destination_grants("sns", "sns", sorted(topics), scope)
    return found + (destination_grants("kinesis", "sns", streams, scope) if streams else [])


KIND = WorkerKind(
    name="sns",
    section="sns",
    uses=lambda config: config.sns is not None,
    specs=specs,
    references=references,
    checks=(reading_topics, notify_events),
    grants=grants,
    sends=lambda config: config.sns is not None,
)
