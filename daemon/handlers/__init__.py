"""Handlers for SQS messages and Kinesis records: the one handler interface both share.

`base.py` is the interface (`Handler`, `Record`); `decode.py` the one payload decoder; `log.py`,
`python.py`, `command.py`, `forward.py` the kinds; `needs.py` what configured handlers need from
the outbox and IAM. Adding a kind: a config model in `daemon/config/handlers.py` (added to
`HandlerConfig`), a module here, and a branch in `build_handler`.
"""

from __future__ import annotations

from typing import Any

from daemon.config.handlers import (
    CommandHandlerConfig,
    ForwardHandlerConfig,
    HandlerConfig,
    LogHandlerConfig,
    PythonHandlerConfig,
)
from daemon.handlers.base import BufferingHandler, Handler, HandlerError, Record


def build_handler(cfg: HandlerConfig, services: Any, *, log: Any = None, name: str = "") -> Handler:
    """The handler for one config entry, with the shared services it may need. `name` (the
    worker's) is the origin of what `forward` puts into the outbox and appears in errors."""
    if isinstance(cfg, LogHandlerConfig):
        from daemon.handlers.log import LogHandler  # noqa: PLC0415

        return LogHandler(cfg, log)
    if isinstance(cfg, PythonHandlerConfig):
        from daemon.handlers.python import PythonHandler  # noqa: PLC0415

        return PythonHandler(cfg)
    if isinstance(cfg, ForwardHandlerConfig):
        from daemon.handlers.forward import ForwardHandler  # noqa: PLC0415

        return ForwardHandler(cfg, services, name=name)
    if isinstance(cfg, CommandHandlerConfig):
        from daemon.handlers.command import CommandHandler  # noqa: PLC0415

        return CommandHandler(cfg, log, name=name)
    raise ValueError(f"no handler for {cfg!r}")


__all__ = ["BufferingHandler", "Handler", "HandlerError", "Record", "build_handler"]
