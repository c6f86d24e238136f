"""Checks that need more than one field or the outside world (importable user code).

They run after the models validated, during `check-config` and before a reload is applied, so a
reload that names a missing module is refused while the old config keeps running.
"""

from __future__ import annotations

from pathlib import Path

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
