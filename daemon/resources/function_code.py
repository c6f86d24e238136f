"""A Lambda function's code, packaged reproducibly: the same files always make the same zip.

Lambda reports the SHA-256 of the archive it holds (`CodeSha256`, base64), so an unchanged
directory must zip to the very same bytes every time, on every host, or every pass would upload
it again and call that drift. So the archive has:

- entries in sorted order (by path, `/`-separated), files only;
- a fixed timestamp (1980-01-01 00:00, the earliest a zip can hold) and fixed permissions:
  0755 for files with an executable bit (a custom runtime's `bootstrap`), else 0644;
- entries stored, not deflated: deflate's output depends on the zlib build (zlib and zlib-ng
  differ), and a fleet's leader changing host must not look like new code. Lambda takes up to
  50 MB uploaded directly, which a function awsd packages is far from;
- no `__pycache__` directories nor `.pyc` files (the interpreter writes them next to the
  sources whenever they are run locally).

A `.zip` file is taken as it is (its own bytes are the digest); any other file is zipped alone.
`python:package.module` names code shipped as an importable Python module (zipped alone) or
package (its directory), wherever it is installed, like the demo function of
`configs/local.toml`. Directories are walked again only when a file's size, time or mode
changed (`digest` caches by those), so a pass over an unchanged function costs a `stat` per file.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
SKIPPED_SUFFIXES = (".pyc",)
MAX_DIRECT_UPLOAD = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Digest:
    """What Lambda reports of an archive: its SHA-256 (base64) and size."""

    sha256: str
    size: int


def _files(root: Path) -> list[tuple[str, Path]]:
    """(archive name, path) of every file under `root`, sorted by archive name."""
    found: list[tuple[str, Path]] = []
    for directory, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in files:
            if name.endswith(SKIPPED_SUFFIXES):
                continue
            path = Path(directory) / name
            found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


PYTHON = "python:"


def resolve(code: str) -> Path:
    """The file or directory a function's `code` names (see the module docstring);
    FileNotFoundError when there is none."""
    if not code.startswith(PYTHON):
        path = Path(code)
        if not path.exists():
            raise FileNotFoundError(f"function code not found: {code}")
        return path
    name = code[len(PYTHON) :]
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise FileNotFoundError(f"no importable Python module {name!r}")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin is None:
        raise FileNotFoundError(f"Python module {name!r} has no file")
    return Path(spec.origin)


def _fingerprint(path: Path) -> tuple[tuple[str, int, int, int], ...]:
    if path.is_file():
        info = path.stat()
        return (("", info.st_size, info.st_mtime_ns, info.st_mode),)
    out = []
    for name, file in _files(path):
        info = file.stat()
        out.append((name, info.st_size, info.st_mtime_ns, info.st_mode))
    return tuple(out)


def archive(path: Path) -> bytes:
    """The zip of a directory or a single file (see the module docstring), or a `.zip` file's
    bytes."""
    if path.is_file() and zipfile.is_zipfile(path):
        return path.read_bytes()
    files = [(path.name, path)] if path.is_file() else _files(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zipped:
        for name, file in files:
            entry = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            executable = file.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            entry.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            entry.create_system = 3  # Unix, so the permissions above are honoured
            entry.compress_type = zipfile.ZIP_STORED
            zipped.writestr(entry, file.read_bytes())
    return buffer.getvalue()


def sha256_of(data: bytes) -> str:
    """Lambda's form of a digest: base64 of the SHA-256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


@functools.lru_cache(maxsize=64)
def _digest(path: str, fingerprint: tuple[tuple[str, int, int, int], ...]) -> Digest:
    del fingerprint  # the cache key: any change of a file packages again
    data = archive(Path(path))
    return Digest(sha256_of(data), len(data))


def digest(code: str) -> Digest:
    """The digest of a function's code archive (cached while no file changes);
    FileNotFoundError when the code does not exist."""
    path = resolve(code)
    return _digest(str(path.resolve()), _fingerprint(path))


def check_code(code: str) -> str | None:
    """Why `code` cannot be a function's code; None when it can."""
    try:
        path = resolve(code)
    except FileNotFoundError as exc:
        return f"{exc} (a directory, a file, a .zip, or python:package.module)"
    if path.is_dir() and not _files(path):
        return f"{code!r} is an empty directory"
    return None
