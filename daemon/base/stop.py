"""Stop tokens: how a loop learns it should finish, and sleeps that wake when it should.

Every loop in awsd waits through a `StopToken`, so a stop request is seen within one await
instead of after the longest sleep. Time is the event loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """Raised by `StopToken.race` when the stop request came first."""


class StopToken:
    """A one-way flag with wakeable waits. Create it inside a running loop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.deadline: float | None = None
        """Loop time by which the owner wants the work finished, once stop was requested."""

    @property
    def stopping(self) -> bool:
        return self._event.is_set()

    def stop(self, deadline: float | None = None) -> None:
        if deadline is not None and (self.deadline is None or deadline < self.deadline):
            self.deadline = deadline
        self._event.set()

    def remaining(self, default: float) -> float:
        """Seconds left until the stop deadline (or `default` when none is set), never < 0."""
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    async def wait(self) -> None:
        await self._event.wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return True if the full time passed, False if stop came first."""
        if self._event.is_set():
            return False
        if seconds <= 0:
            await asyncio.sleep(0)
            return True
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return True
        return False

    async def race(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` unless stop is requested first; then cancel it and raise Stopped."""
        # The task always gets to start before it may be cancelled: cancelling a task that never
        # ran would leave the coroutines it was built from never awaited.
        task = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise Stopped
        return task.result()
