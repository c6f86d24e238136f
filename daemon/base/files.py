"""Private state on disk: every state file 0600 and every state directory 0700, whatever the umask.

The outbox holds message bodies, the checkpoint and alert stores what awsd did, the ingest token
a credential: none of it is for other local users. Whoever writes a file under the state
directory goes through here (the SQLite stores, the ingest token, the pid and endpoint files), so
the promise holds in one place:

- `private_dir` creates a directory 0700 (parents included) and reports an existing one that
  group or others can enter (`open_dir_reason`), without changing a directory the operator owns;
- `private_file` creates a file 0600 before SQLite (or anyone) opens it, and takes group and
  other bits away from one that exists (an older awsd, a copy made by hand);
- `write_private` writes a small file atomically (temporary file 0600, fsync, rename);
- `read_bounded` reads a regular file of at most a given size (never a FIFO, a device or a
  symlink loop, never an unbounded read);
- `free_bytes` and `is_disk_full` tell a full file system from other failures.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
from pathlib import Path

SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database; it gives them the database file's mode."""

PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")
"""Where no state can live (kernel interfaces, not storage)."""


class StatePathError(OSError):
    """A state path that cannot be used (a file where a directory belongs, or the reverse)."""


def private_dir(path: str | os.PathLike[str]) -> Path:
    """`path` as an existing directory, created 0700 (with its parents) when missing."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise StatePathError(errno.ENOTDIR, "exists and is not a directory", str(directory))
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkdir's mode passes through the umask, which may only remove bits: say it outright.
        with contextlib.suppress(OSError):
            directory.chmod(0o700)
    return directory


def open_dir_reason(path: str | os.PathLike[str], *, group_search: bool = False) -> str | None:
    """Why other local users can reach into `path` (group or world permission bits), or None.
    `group_search`: the group may enter without listing (0710, granted on purpose)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & (0o067 if group_search else 0o077):
        return None
    who = []
    if mode & 0o070:
        who.append("its group")
    if mode & 0o007:
        who.append("every local user")
    return (
        f"mode {mode:04o} lets {' and '.join(who)} into it (state files are 0600, but names "
        f"and sizes show; `chmod 700 {path}`)"
    )


def private_file(path: str | os.PathLike[str], *, sidecars: tuple[str, ...] = ()) -> None:
    """Create `path` 0600 if missing; take group/other bits from it (and from `sidecars`, the
    suffixed files beside it) when present. Symlinks are not followed when creating."""
    name = os.fspath(path)
    try:
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for each in (name, *(name + s for s in sidecars)):
        _tighten(each)


def _tighten(name: str) -> None:
    try:
        st = os.stat(name)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
        with contextlib.suppress(OSError):
            os.chmod(name, stat.S_IMODE(st.st_mode) & 0o700)


def sqlite_file(path: str) -> None:
    """Ready an SQLite database path: its directory 0700, the file and its sidecars 0600
    (`:memory:` is left alone)."""
    if path == ":memory:" or path.startswith("file:"):
        return
    private_dir(Path(path).parent)
    private_file(path, sidecars=SQLITE_SIDECARS)


def write_private(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically, readable by the owner only (or as `mode` says)."""
    target = Path(path)
    private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if mode != 0o600:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class NotARegularFile(OSError):
    """A path that names a FIFO, a device, a socket or a directory where a file was expected."""


class TooLarge(OSError):
    """A file larger than the caller accepts."""


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them. Raises NotARegularFile
    (FIFOs are opened without blocking, so none can hang the caller), TooLarge, or OSError
    (ELOOP for a symlink loop, ENOENT, EACCES...)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(errno.EINVAL, _kind(st.st_mode), os.fspath(path))
        if st.st_size > limit:
            raise TooLarge(errno.EFBIG, f"{st.st_size} bytes", os.fspath(path))
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while being read
            raise TooLarge(errno.EFBIG, f"more than {limit} bytes", os.fspath(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of `path` (or of its
    nearest existing parent); None when it cannot be told."""
    here = Path(path)
    for candidate in (here, *here.parents):
        try:
            st = os.statvfs(candidate)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return int(st.f_bavail * st.f_frsize)
    return None


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc` says the file system (or the user's quota) has no room left."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        return "database or disk is full" in str(exc)
    return False


def under_pseudo_filesystem(path: str | os.PathLike[str]) -> str | None:
    """The kernel file system (`/proc`, `/sys`, `/dev`) an absolute path lies in, or None."""
    text = os.path.normpath(os.path.abspath(os.fspath(path)))
    for root in PSEUDO_FILESYSTEMS:
        if text == root or text.startswith(root + "/"):
            return root
    return None
