"""The process's own vital signs as metrics: memory, CPU, open files, start time, version.

Read from /proc at export time by a registry collector (nothing runs between exports). On a
Raspberry Pi `awsd_process_resident_memory_bytes` is the figure to watch against the 60 MB
footprint target.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path

from daemon import __version__
from daemon.core.metrics.registry import Registry

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def register_process_metrics(registry: Registry) -> None:
    rss = registry.gauge(
        "awsd_process_resident_memory_bytes", "Resident memory of the awsd process"
    ).labels()
    cpu = registry.counter(
        "awsd_process_cpu_seconds_total", "CPU time (user + system) used by the awsd process"
    ).labels()
    fds = registry.gauge("awsd_process_open_fds", "Open file descriptors").labels()
    registry.gauge(
        "awsd_process_start_time_seconds", "Start time of the process, in Unix seconds"
    ).labels().set(time.time())
    registry.gauge("awsd_info", "Always 1; the version is in the label", ("version",)).labels(
        version=__version__
    ).set(1)

    def collect() -> None:
        rss.set(resident_bytes())
        times = os.times()
        # Collectors may set a counter's value: it only ever reads a total that grows.
        cpu.value = times.user + times.system
        with contextlib.suppress(OSError):  # no /proc off Linux
            fds.set(len(os.listdir("/proc/self/fd")))

    registry.add_collector(collect)


def resident_bytes() -> int:
    """Current resident set size (falls back to the peak where /proc is missing)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
