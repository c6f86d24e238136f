"""Custom workers used by the runtime tests (loaded by the real daemon as `tests.support...`)."""

from __future__ import annotations

import asyncio
from typing import Any


async def idle(ctx: Any, options: dict[str, Any]) -> None:
    """Logs that it started, idles until stopped, then takes `finish_delay` to finish."""
    ctx.log.info("test worker started", tag=options.get("tag"))
    while await ctx.sleep(0.1):
        pass
    await asyncio.sleep(float(options.get("finish_delay", 0)))
    ctx.log.info("test worker finished", tag=options.get("tag"))


async def crash(ctx: Any, options: dict[str, Any]) -> None:
    await asyncio.sleep(float(options.get("after", 0)))
    raise RuntimeError(f"boom from {ctx.name}")


async def stubborn(ctx: Any, options: dict[str, Any]) -> None:
    """Ignores the stop token; only cancellation ends it."""
    ctx.log.info("test worker started", tag=options.get("tag"))
    while True:
        await asyncio.sleep(0.05)


async def silent(ctx: Any, options: dict[str, Any]) -> None:
    """Never reports progress: a stuck worker for the watchdog."""
    ctx.log.info("test worker started", tag=options.get("tag"))
    await ctx.stop.wait()


LEAKED_SECRETS = (
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "hunter2-hunter2",
    "AKIAIOSFODNN7EXAMPLE",
    "s3cr3tpass",
    "abc.def.ghi",
    "IQoJb3JpZ2luX2VjEJr",
)
"""What `leak_secrets` logs that no log line, file or shipped event may ever show."""


async def leak_secrets(ctx: Any, options: dict[str, Any]) -> None:
    ctx.log.info(
        "secret test",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        password="hunter2-hunter2",
        note="key AKIAIOSFODNN7EXAMPLE and url https://bob:s3cr3tpass@example.test/x",
        headers={"Authorization": "Bearer abc.def.ghi", "Accept": "json"},
        token_detail="IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD",
    )
    while await ctx.sleep(0.1):
        pass


async def ticking(ctx: Any, options: dict[str, Any]) -> None:
    """Counts ticks in a counter and a histogram; logs the final count once stopped."""
    metrics = ctx.services.metrics
    ticks = metrics.counter("awsd_test_ticks_total", "Test ticks", ("worker",)).labels(
        worker=ctx.name
    )
    latency = metrics.histogram("awsd_test_tick_seconds", "Test tick", ("worker",)).labels(
        worker=ctx.name
    )
    ctx.log.info("test worker started", tag=options.get("tag"))
    while await ctx.sleep(float(options.get("every", 0.05))):
        ticks.inc()
        latency.observe(0.01)
    ticks.inc()  # one last tick while stopping: only a flush after the workers stop sends it
    latency.observe(0.02)
    ctx.log.info("test worker finished", tag=options.get("tag"), ticks=ticks.value)


async def produce(ctx: Any, options: dict[str, Any]) -> None:
    """Puts `count` numbered messages for SQS queue `queue` through the outbox, logging each id
    only after the outbox accepted it (so the test knows what must arrive)."""
    from daemon.outbox import Message

    queue, count = options["queue"], int(options["count"])
    every = float(options.get("every", 0))
    for n in range(count):
        if ctx.stopping:
            break
        ids = await ctx.services.outbox.put_many(
            [Message("sqs", queue, {"body": f"msg-{n}"}, origin=ctx.name)]
        )
        ctx.log.info("test message accepted", n=n, id=ids[0])
        if every:
            await ctx.sleep(every)
    ctx.log.info("test producer done")
    while await ctx.sleep(0.1):
        pass
