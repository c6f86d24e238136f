"""Python handlers used by the messaging tests (in-process, and loaded by spawned daemons).

In-process tests read the module-level `CALLS`; spawned daemons report through log lines.
The body says what to do: `sleep:<seconds> ...`, `fail...` (always), `fail-once...` (as many
times as `STATE["fail_until"][body]` says), anything else succeeds at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from daemon.core.logs import get_logger
from daemon.handlers import Record

CALLS: list[Record] = []
STATE: dict[str, Any] = {"running": 0, "max_running": 0, "fail_until": {}}


def reset() -> None:
    CALLS.clear()
    STATE.update(running=0, max_running=0, fail_until={})


async def behave(record: Record) -> None:
    """Records the call; sleeps or fails as the body asks; tracks concurrency."""
    STATE["running"] += 1
    STATE["max_running"] = max(STATE["max_running"], STATE["running"])
    try:
        text = record.text or ""
        if text.startswith("sleep:"):
            await asyncio.sleep(float(text.split(":", 1)[1].split()[0]))
        if text.startswith("fail-once"):
            left = STATE["fail_until"].get(text, 0)
            if left > 0:
                STATE["fail_until"][text] = left - 1
                raise RuntimeError(f"refusing {text} this time")
        elif text.startswith("fail"):
            raise RuntimeError(f"refusing {text}")
        CALLS.append(record)
    finally:
        STATE["running"] -= 1


async def logged(record: Record) -> None:
    """For spawned daemons: logs each record (after sleeping `sleep:<s>` bodies)."""
    text = record.text or ""
    if text.startswith("sleep:"):
        await asyncio.sleep(float(text.split(":", 1)[1].split()[0]))
    get_logger().info("test handled", id=record.id, body=text, kind=record.kind)
