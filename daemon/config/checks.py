"""Checks that need more than one field or the outside world (importable user code).

They run after the models validated, during `check-config` and before a reload is applied, so a
reload that names a missing module is refused while the old config keeps running.
"""

from __future__ import annotations

from daemon.config.handlers import PythonHandlerConfig
from daemon.config.loader import CROSS_CHECKS
from daemon.config.models import Config
from daemon.plugins import load_callable


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
    for name, poller in config.sqs.items():
        if isinstance(poller.handler, PythonHandlerConfig):
            try:
                load_callable(poller.handler.entrypoint)
            except ValueError as exc:
                problems.append((f"sqs.{name}.handler.entrypoint", str(exc)))
    return problems


def _reading_topics(config: Config) -> list[tuple[str, str]]:
    if config.sns is None or config.sns.topic is not None:
        return []
    return [
        (f"sns.readings.{name}.topic", "no topic: set it here, or a default in sns.topic")
        for name, reading in config.sns.readings.items()
        if reading.topic is None
    ]


CROSS_CHECKS.extend([_custom_entrypoints, _handler_entrypoints, _reading_topics])
