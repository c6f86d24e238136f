"""What the daemon does to itself as a process: task dumps, memory settling, a hard exit.

These act on the whole process (every asyncio task, the garbage collector, libc's heap), so
they live apart from the lifecycle that calls them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import sys
from typing import Any

from daemon.core.logs import get_logger

log = get_logger()


def dump_tasks() -> None:
    """SIGUSR1: log every asyncio task with the chain of awaits it is suspended in (for a daemon
    that seems stuck: `kill -USR1 $(pidof awsd)`, then read the journal)."""
    tasks = []
    for task in asyncio.all_tasks():
        where: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(where) < 20:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                path = frame.f_code.co_filename.rsplit("/site-packages/", 1)[-1]
                where.append(f"{path}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        tasks.append({"task": task.get_name(), "awaiting": where})
    log.warning("task dump (SIGUSR1)", tasks=sorted(tasks, key=lambda t: str(t["task"])))


def settle_memory() -> None:
    """After startup (and reloads): move the long-lived objects (config models, botocore service
    models) out of the garbage collector's way, and hand freed startup memory back to the OS.
    The collector is enabled here: `awsd run` starts with it off (see `daemon.cli.entry`)."""
    gc.collect()
    gc.freeze()
    gc.enable()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def hard_exit(total: float) -> None:
    sys.stderr.write(f"awsd: shutdown did not finish within {total}s; exiting now\n")
    sys.stderr.flush()
    os._exit(1)
