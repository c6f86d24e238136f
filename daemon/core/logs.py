"""Structured logging: one JSON object per line for journald, or a console layout for people
(`daemon.core.console`: on a terminal, or `log.format = "console"`).

Everything that logs goes through one pipeline: structlog loggers, and the stdlib loggers of
botocore, aiohttp and asyncio (at `log.library_level`). Every event is redacted before it is
rendered or handed to a sink, so a credential cannot reach stdout, journald or CloudWatch Logs.
Sinks (the CloudWatch Logs shipper) receive the redacted event dict and must not block.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from daemon.base.redact import configure_redaction, redact
from daemon.config.models import LogConfig
from daemon.core.console import ConsoleRenderer, colors_wanted

Sink = Callable[[EventDict], None]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_LIBRARY_LOGGERS = (
    "botocore",
    "aiobotocore",
    "aioboto3",
    "boto3",
    "urllib3",
    "aiohttp",
    "asyncio",
    "s3transfer",
)
_FIRST_KEYS = ("timestamp", "level", "event", "worker", "env", "config_version")

_static: dict[str, Any] = {}
_sinks: list[Sink] = []
_unfiltered: Any = None


def set_context(**fields: Any) -> None:
    """Fields added to every event from now on (env, config_version)."""
    _static.update(fields)


def add_sink(sink: Sink) -> None:
    _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    if sink in _sinks:
        _sinks.remove(sink)


def get_logger(**initial: Any) -> Any:
    """A structlog logger, optionally with bound fields."""
    return structlog.get_logger(**initial)


def _add_static(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key, value in _static.items():
        event.setdefault(key, value)
    return event


def _redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return redact(event)  # type: ignore[no-any-return]


def _fan_out(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for sink in tuple(_sinks):
        try:
            sink(event)
        except Exception:  # noqa: BLE001 - a broken sink must never break logging
            _sinks.remove(sink)
            sys.stderr.write(f"awsd: log sink {sink!r} failed and was removed\n")
    return event


def to_json(event: Mapping[str, Any]) -> str:
    """One event as the JSON line journald gets (timestamp, level, event... first)."""
    ordered = {key: event[key] for key in _FIRST_KEYS if key in event}
    ordered.update(event)
    return json.dumps(ordered, default=str, ensure_ascii=False, separators=(",", ":"))


def _render_json(_: WrappedLogger, __: str, event: EventDict) -> str:
    return to_json(event)


_SYSLOG_PRIORITY = {
    "debug": 7,
    "info": 6,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
}


def _to_journal(stream: TextIO) -> bool:
    """True when stdout is systemd's journal stream (JOURNAL_STREAM names its device:inode)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def _with_priority(render: Processor) -> Processor:
    """Prefix each line with its syslog priority (`<3>`): journald strips it and records the
    level, so `journalctl -p err` filters and `-o json` still shows the plain JSON line."""

    def prefixed(logger: WrappedLogger, method: str, event: EventDict) -> str:
        priority = _SYSLOG_PRIORITY.get(str(event.get("level", method)), 6)
        line = render(logger, method, event)
        return f"<{priority}>{line.decode() if isinstance(line, bytes) else line}"

    return prefixed


def _renderer(cfg: LogConfig, stream: TextIO) -> Processor:
    console = cfg.format == "console" or (cfg.format == "auto" and stream.isatty())
    if console:
        return ConsoleRenderer(colors=colors_wanted(stream))  # daemon/core/console.py
    return _with_priority(_render_json) if _to_journal(stream) else _render_json


def _shared_processors() -> list[Processor]:
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_static,
        structlog.processors.format_exc_info,
        _redact,
        _fan_out,
    ]


def configure_logging(cfg: LogConfig, *, stream: TextIO | None = None) -> None:
    """(Re)configure the whole pipeline; safe to call again on reload."""
    out = stream or sys.stdout
    configure_redaction(cfg.redact_query)
    renderer = _renderer(cfg, out)
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        *_shared_processors(),
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[cfg.level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    global _unfiltered  # noqa: PLW0603 - rebuilt with the pipeline it mirrors
    _unfiltered = structlog.wrap_logger(
        structlog.WriteLogger(file=out),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            *_shared_processors(),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    library = _LEVELS[cfg.library_level]
    root.setLevel(min(library, _LEVELS[cfg.level]))
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library)


def unfiltered_logger() -> Any:
    """A logger through the same pipeline (redaction, sinks, stdout) that ignores `log.level`:
    for EMF metric lines, which must reach journald and CloudWatch Logs at any log level."""
    return _unfiltered if _unfiltered is not None else structlog.get_logger()


def bind_worker(name: str) -> None:
    """Tag every event of the current task (and tasks it starts) with the worker name."""
    structlog.contextvars.bind_contextvars(worker=name)


def context() -> MutableMapping[str, Any]:
    return structlog.contextvars.get_contextvars()
