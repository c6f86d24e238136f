"""The `log` handler: one structured log event per record (a `print(message)` made structured)."""

from __future__ import annotations

from typing import Any

from daemon.config.handlers import LogHandlerConfig
from daemon.core.logs import get_logger
from daemon.handlers.base import Handler, Record


class LogHandler(Handler):
    def __init__(self, cfg: LogHandlerConfig, log: Any = None) -> None:
        self.cfg = cfg
        self.log = log or get_logger()

    async def handle(self, record: Record) -> None:
        body: Any = record.data if record.data is not None else record.text
        if body is None:
            body = f"<{len(record.body)} bytes>"
        elif isinstance(body, str) and len(body) > self.cfg.max_chars:
            body = body[: self.cfg.max_chars] + f"...[{len(body) - self.cfg.max_chars} more]"
        getattr(self.log, self.cfg.level)(
            "record",
            source=record.source,
            id=record.id,
            record_kind=record.kind,
            body=body,
            attributes=record.attributes or None,
            **record.meta,
        )
