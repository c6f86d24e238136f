"""Checks that need more than one field or the outside world (importable user code).

They run after the models validated, during `check-config` and before a reload is applied, so a
reload that names a missing module is refused while the old config keeps running.
"""

from __future__ import annotations

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


CROSS_CHECKS.append(_custom_entrypoints)
