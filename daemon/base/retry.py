"""The one retry and backoff mechanism: capped exponential delays with jitter.

Used for worker restarts, AWS calls awsd retries itself (per-entry batch failures, outbox
delivery, receive loops) and webhooks. Jitter keeps a fleet of Pis that lost their network at the
same moment from coming back in lock step; the floor of half the delay keeps a failing call from
ever spinning in a tight loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from daemon.base.stop import Stopped, StopToken

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays `initial * multiplier**attempt`, capped at `maximum`, drawn from [d/2, d]."""

    initial: float = 0.2
    maximum: float = 20.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number `attempt` (0 for the first retry)."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        draw = (rng or random).random()
        return ceiling / 2 + draw * ceiling / 2


class Attempts:
    """Counts consecutive failures and hands out the next delay; `reset()` after a success."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.failures = 0

    def next_delay(self) -> float:
        delay = self.backoff.delay(self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    retry_if: Callable[[BaseException], bool],
    backoff: Backoff = Backoff(),
    attempts: int | None = None,
    budget: float | None = None,
    stop: StopToken | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Call until it succeeds, a non-retryable error, `attempts` calls, or `budget` seconds.

    The last error is raised when giving up. A stop request interrupts the wait between attempts
    and raises `Stopped`.
    """
    loop = asyncio.get_running_loop()
    give_up_at = None if budget is None else loop.time() + budget
    tries = Attempts(backoff)
    while True:
        try:
            return await call()
        except Exception as exc:
            if not retry_if(exc):
                raise
            delay = tries.next_delay()
            out_of_tries = attempts is not None and tries.failures >= attempts
            out_of_time = give_up_at is not None and loop.time() + delay > give_up_at
            if out_of_tries or out_of_time:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            if stop is not None:
                if not await stop.sleep(delay):
                    raise Stopped from exc
            else:
                await asyncio.sleep(delay)
