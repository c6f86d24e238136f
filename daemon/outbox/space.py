"""Room on disk for the outbox to finish what it started.

A message AWS accepted must leave the outbox file, and leaving is a write (SQLite appends the
deletion to its WAL). On a full disk that write fails, and a message that cannot be deleted
would be sent again. So the outbox keeps headroom, two ways:

- intake stops while the state directory's file system has less than `outbox.min_free_bytes`
  free (a put is refused with "state directory full: N bytes free"), leaving room for the
  deletions, checkpoints and alert states that follow;
- a reserve file of `outbox.reserve_bytes` (`<outbox file>.reserve`, allocated on disk) is
  given up the moment a write fails for lack of space, so that write can be retried at once,
  and allocated again once space has returned.
"""

from __future__ import annotations

import contextlib
import errno
import os

from daemon.base.files import free_bytes, is_disk_full
from daemon.core.logs import get_logger
from daemon.core.storage import StateDirFull

log = get_logger()


class Headroom:
    """The outbox's space rules for one file (`:memory:`: none)."""

    def __init__(self, path: str, *, min_free: int, reserve: int) -> None:
        self.path = path
        self.enabled = path != ":memory:"
        self.reserve_path = f"{path}.reserve"
        self.min_free = min_free
        self.reserve = reserve

    def configure(self, *, min_free: int, reserve: int) -> None:
        self.min_free, self.reserve = min_free, reserve

    def free(self) -> int | None:
        return free_bytes(self.path) if self.enabled else None

    def check_intake(self) -> None:
        """Raise StateDirFull when fewer than `min_free` bytes are left (outbox thread)."""
        if not self.enabled or not self.min_free:
            return
        free = self.free()
        if free is not None and free < self.min_free:
            raise StateDirFull(
                os.path.dirname(self.path) or ".",
                free,
                f"the outbox keeps {self.min_free} bytes free",
            )

    def has_reserve(self) -> bool:
        return self.enabled and os.path.exists(self.reserve_path)

    def ensure_reserve(self) -> bool:
        """Allocate the reserve file if it is missing and there is room; True when it exists."""
        if not self.enabled or not self.reserve:
            return False
        if os.path.exists(self.reserve_path):
            return True
        free = self.free()
        if free is not None and free < self.reserve + self.min_free:
            return False
        try:
            fd = os.open(
                self.reserve_path,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except FileExistsError:
            return True
        except OSError:
            return False
        try:
            _allocate(fd, self.reserve)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.reserve_path)
            if not is_disk_full(exc):
                log.warning(
                    "outbox reserve file not created", path=self.reserve_path, error=str(exc)
                )
            return False
        os.close(fd)
        return True

    def release(self) -> bool:
        """Give the reserve's space back to the file system; True if there was one."""
        if not self.enabled:
            return False
        try:
            os.unlink(self.reserve_path)
        except OSError:
            return False
        log.warning(
            "state directory full: the outbox gave up its reserve space to record deliveries",
            path=self.reserve_path,
            bytes=self.reserve,
        )
        return True


def _allocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        # No fallocate on this file system: write the bytes (they must really be on disk).
        block = b"\0" * 65536
        left = size
        while left > 0:
            left -= os.write(fd, block[: min(left, len(block))])
    os.fsync(fd)
