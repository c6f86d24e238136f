"""The systemd notify protocol (sd_notify), without libsystemd.

Datagrams of `KEY=value` lines to $NOTIFY_SOCKET (a path, or an abstract socket written `@name`).
Everything here is a no-op when NOTIFY_SOCKET is unset, so the daemon runs the same by hand.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from daemon.core.logs import get_logger

log = get_logger()


class Notifier:
    """Sends READY/RELOADING/STOPPING/STATUS/WATCHDOG messages to the service manager."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        self._failed = False
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        self.watchdog_usec = (
            int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0
        )

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> bool:
        if not self._address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._failed:  # say it once; the daemon works without systemd
                log.warning(
                    "sd_notify failed", socket=self._address.replace("\0", "@"), error=str(exc)
                )
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the configured timeout), or None."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
