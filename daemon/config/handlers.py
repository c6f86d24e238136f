"""Handler config: what to do with each SQS message or Kinesis record (`kind` picks the handler).

The SQS poller and the Kinesis reader share this union and the handlers behind it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from daemon.config.base import Entrypoint, Section


class LogHandlerConfig(Section):
    """Write each record as one structured log event."""

    kind: Literal["log"]
    """Handler kind."""

    level: Literal["debug", "info", "warning"] = "info"
    """Log level of the event."""

    max_chars: int = Field(default=2000, ge=0, le=1_000_000)
    """Longest body text logged; longer bodies are cut with a marker."""


class PythonHandlerConfig(Section):
    """Call a Python function with each record: `def f(record)` or `async def f(record)`.
    Returning means success; raising means failure. A sync function runs in a thread."""

    kind: Literal["python"]
    """Handler kind."""

    entrypoint: Entrypoint
    """The function, as `package.module:function`."""


HandlerConfig = Annotated[
    LogHandlerConfig | PythonHandlerConfig,
    Field(discriminator="kind"),
]
"""One handler; `kind` selects which."""
