"""The `python` handler: a user's function, sync (run in a thread) or async (awaited)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from daemon.base.plugins import load_callable
from daemon.config.handlers import PythonHandlerConfig
from daemon.handlers.base import Handler, Record


class PythonHandler(Handler):
    def __init__(self, cfg: PythonHandlerConfig) -> None:
        self.function = load_callable(cfg.entrypoint)
        self.is_async = inspect.iscoroutinefunction(self.function)

    async def handle(self, record: Record) -> None:
        if self.is_async:
            await self.function(record)
            return
        # A sync function cannot be cancelled mid-call: at a timeout the source stops waiting
        # and treats the record as failed, while the thread finishes on its own.
        result: Any = await asyncio.to_thread(self.function, record)
        if inspect.isawaitable(result):
            await result
