"""Helpers for the deployment tests: external tools, unit files, staged-root manifests."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.proc import REPO

INSTALL_SH = REPO / "deploy" / "install.sh"
UNIT_FILE = REPO / "systemd" / "awsd.service"


def tool(name: str) -> str:
    """Path of an external tool the tests need; a clear failure (not a skip) when it is missing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(
            f"{name} is not installed: `make test` installs it (Debian: apt-get install {name})"
        )
    return found


def run(
    *args: str | Path, check: bool = True, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; on an unexpected exit code, show all of it."""
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(str(a) for a in args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment of a systemd unit file, in order (keys repeat)."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(entries: list[tuple[str, str, str]], key: str) -> list[str]:
    return [v for _, k, v in entries if k == key]


def seconds(span: str) -> float:
    """A systemd time span as seconds (the forms the unit uses: 30, 30s, 2min, 90s)."""
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
    for suffix in sorted(units, key=len, reverse=True):
        if span.endswith(suffix) and span[: -len(suffix)].replace(".", "").isdigit():
            return float(span[: -len(suffix)]) * units[suffix]
    return float(span)


def manifest(root: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """Every path under root: mode, owner, group, mtime and content hash (or link target)."""
    out: dict[str, tuple[int, int, int, int, str]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            st = path.lstat()
            if path.is_symlink():
                what = "-> " + os.readlink(path)
            elif path.is_file():
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                what = "dir"
            out[str(path.relative_to(root))] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns,
                what,
            )
    return out


def copy_sources(dest: Path) -> Path:
    """A copy of what the awsd package is built from, so builds never write into the worktree."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("daemon", "configs", "systemd", "deploy", "docs"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest
