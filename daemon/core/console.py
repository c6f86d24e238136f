"""The console layout: the log for a person at a terminal (JSON stays the format for machines).

One line per event, in the order a reader scans it: local time, level, worker, event, then the
event's own keys in the order the code wrote them:

    ── awsd · env local · config 1e7c59cb03d5 · host pi4 · 2026-12-03, times UTC+01:00 ──
    18:38:59.928 info  sqs:readings         record  source=sqs id=1dec2fc8-… body={"name":…

What is the same on every line (env, config version, host) is said once, in a context line at
the start and again whenever it changes (a reload with a new config version, a new day). Values
longer than `value_limit` characters are cut with an ellipsis, keys without a value (None) are
left out, and a traceback follows its line whole. Nothing here changes what the JSON output,
journald or CloudWatch Logs receive: they keep every field.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime
from typing import Any

from structlog.typing import EventDict, WrappedLogger

CONTEXT_KEYS = ("env", "config_version")
"""Event keys that are the same on every line: shown in the context line instead."""

_LEVELS = {
    "debug": ("debug", "\x1b[2m"),
    "info": ("info ", "\x1b[32m"),
    "warning": ("warn ", "\x1b[33m"),
    "warn": ("warn ", "\x1b[33m"),
    "error": ("error", "\x1b[1;31m"),
    "exception": ("error", "\x1b[1;31m"),
    "critical": ("crit ", "\x1b[1;41m"),
}
_RESET, _DIM, _BOLD, _CYAN = "\x1b[0m", "\x1b[2m", "\x1b[1m", "\x1b[36m"
_PLAIN_TEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/+@,%")


def colors_wanted(stream: Any) -> bool:
    """Colours on a terminal, unless NO_COLOR is set (no-color.org)."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("NO_COLOR")


class ConsoleRenderer:
    """A structlog renderer for the console layout (see the module docstring)."""

    def __init__(
        self,
        *,
        colors: bool = False,
        value_limit: int = 80,
        host: str | None = None,
        worker_width: int = 16,
        worker_width_max: int = 24,
    ) -> None:
        self.colors = colors
        self.value_limit = value_limit
        self.host = host if host is not None else socket.gethostname()
        self.worker_width = worker_width
        """Width of the worker column: grows to the longest name seen, up to the max."""
        self.worker_width_max = worker_width_max
        self._context: dict[str, str] = {}
        self._day: str | None = None

    def __call__(self, _: WrappedLogger, method: str, event: EventDict) -> str:
        fields = dict(event)
        context = tuple((k, str(fields.pop(k))) for k in CONTEXT_KEYS if k in fields)
        when = _local_time(fields.pop("timestamp", None))
        lines = []
        header = self._context_line(context, when)
        if header:
            lines.append(header)
        level = str(fields.pop("level", method))
        worker = str(fields.pop("worker", None) or fields.pop("logger", None) or "")
        name = str(fields.pop("event", ""))
        trace = fields.pop("exception", None)
        stack = fields.pop("stack", None)
        lines.append(self._line(when, level, worker, name, fields))
        for block in (stack, trace):
            if block:
                lines += ["    " + text for text in str(block).rstrip().splitlines()]
        return "\n".join(lines)

    def _context_line(self, context: tuple[tuple[str, str], ...], when: datetime | None) -> str:
        """The context line, when this event's context differs from the last one shown (an
        event without context keys, such as a library's, changes nothing)."""
        day = when.strftime("%Y-%m-%d") if when else self._day or ""
        changed = {k: v for k, v in context if self._context.get(k) != v}
        if self._day is not None and day == self._day and not changed:
            return ""
        self._context.update(changed)
        self._day = day
        names = {"env": "env", "config_version": "config"}
        parts = ["awsd", *(f"{names.get(k, k)} {v}" for k, v in self._context.items())]
        parts.append(f"host {self.host}")
        if when:
            offset = when.strftime("%z")
            parts.append(f"{day}, times UTC{offset[:3]}:{offset[3:]}")
        return self._paint(f"── {' · '.join(parts)} ──", _DIM)

    def _line(
        self, when: datetime | None, level: str, worker: str, name: str, fields: dict[str, Any]
    ) -> str:
        clock = when.strftime("%H:%M:%S.%f")[:-3] if when else " " * 12
        label, color = _LEVELS.get(level, (level[:5].ljust(5), ""))
        if len(worker) > self.worker_width:
            self.worker_width = min(len(worker), self.worker_width_max)
        parts = [
            self._paint(clock, _DIM),
            self._paint(label, color),
            self._paint(worker.ljust(self.worker_width), _CYAN),
            self._paint(name, _BOLD),
        ]
        pairs = [
            f"{self._paint(key + '=', _DIM)}{self.value(value)}"
            for key, value in fields.items()
            if value is not None and not key.startswith("_")
        ]
        line = " ".join(parts)
        return f"{line}  {' '.join(pairs)}" if pairs else line

    def value(self, value: Any) -> str:
        """One value as the console shows it: text as is when it is one plain word, else quoted;
        tables and lists as compact JSON; cut to `value_limit` characters with an ellipsis."""
        if isinstance(value, str):
            text = value if value and set(value) <= _PLAIN_TEXT else _json(value)
        elif isinstance(value, bool) or value is None:
            text = json.dumps(value)
        elif isinstance(value, int | float):
            text = str(value)
        else:
            text = _json(value)
        if len(text) > self.value_limit:
            text = text[: self.value_limit - 1] + "…"
        return text

    def _paint(self, text: str, color: str) -> str:
        return f"{color}{text}{_RESET}" if self.colors and color else text


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _local_time(stamp: Any) -> datetime | None:
    """The event's ISO timestamp (UTC) in the machine's time zone, for people."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).astimezone()
    except ValueError:
        return None
