"""How an in-process test watches the daemon's parts: wait on the loop for a condition, and read
a metric from a registry. (A spawned daemon is watched through its logs and HTTP: `proc.py`.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from daemon.core.metrics import Registry


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds (loop time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def metric(registry: Registry, name: str, **labels: str) -> float:
    """The sum of a counter's or gauge's series whose labels include `labels` (0 when none)."""
    for family in registry.families():
        if family.name == name:
            return sum(
                child.value  # type: ignore[union-attr]
                for got, child in family.series()
                if all(got.get(k) == v for k, v in labels.items())
            )
    return 0.0
