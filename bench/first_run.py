"""A fresh clone's first `make run`, to READY: what a new user waits for.

`python -m bench first_run` clones this repository's HEAD into a temporary directory and runs,
side by side:

- `make run` as it is: a venv with only what running needs (awsd, and moto's server with the
  services awsd calls), installed without byte-compiling;
- the way it was: the development tools and `moto[server]` (every service's dependencies),
  byte-compiled, then the same `awsd run`.

Each is timed from the command's start to the daemon's `ready` log line, split into the install
(until `awsd run` starts) and the daemon's own start. Ports and the state directory are moved
out of the way with `AWSD__...` overrides, so it can run beside another awsd. pip's cache state
matters: the figures say how many files pip's HTTP cache held, and `AWSD_BENCH_PIP_CACHE=cold`
gives each run an empty cache of its own (default: the user's cache, as a person has it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = ".venv/bin/awsd run --config configs/local.toml"
BEFORE = (
    "python3 -m venv .venv && .venv/bin/python -m pip install --quiet "
    "--disable-pip-version-check -e '.[dev]' 'moto[server]>=5' && "
    f"echo '{RUN}' && exec {RUN}"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_cache_files(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "info"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    for line in done.stdout.splitlines():
        if "Number of HTTP files" in line:
            return line.split(":", 1)[1].strip()
    return "?"


def first_run(command: list[str], work: Path, cold: bool) -> dict[str, float | str]:
    clone = work / "clone"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWSD", "AWS_", "VIRTUAL"))}
    env |= {
        "AWSD__HEALTH__PORT": str(free_port()),
        "AWSD__AWS__LOCAL_PORT": str(free_port()),
        "AWSD_STATE_DIR": str(work / f"state-{time.monotonic_ns()}"),
    }
    if cold:
        env["PIP_CACHE_DIR"] = str(work / "pip-cache")
        shutil.rmtree(work / "pip-cache", ignore_errors=True)
    cache = http_cache_files(env)
    began = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    marks: dict[str, float | str] = {"pip_http_cache_files": cache}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip().endswith(RUN) and "installed" not in marks:
            marks["installed"] = time.monotonic() - began
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "ready":
            marks["ready"] = time.monotonic() - began
            break
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(60)
    size = subprocess.run(
        ["du", "-sm", str(clone / ".venv")], capture_output=True, text=True, check=False
    )
    marks["venv_mb"] = float(size.stdout.split()[0]) if size.stdout else 0.0
    freeze = subprocess.run(
        [str(clone / ".venv/bin/python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=False,
    )
    marks["packages"] = float(len(freeze.stdout.splitlines()))
    return marks


def main() -> None:
    cold = os.environ.get("AWSD_BENCH_PIP_CACHE") == "cold"
    load = os.getloadavg()[0]
    print(
        f"fresh clone of {REPO} (HEAD), pip cache: {'empty' if cold else 'the user'}'s, "
        f"load average {load:.1f} on {os.cpu_count()} cores"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="awsd-first-run-") as tmp:
        for name, command in (
            ("make run", ["make", "run"]),
            ("before: dev tools + moto[server]", ["sh", "-c", BEFORE]),
        ):
            marks = first_run(command, Path(tmp), cold)
            rows.append((name, marks))
            ready, installed = marks.get("ready", float("nan")), marks.get("installed", 0.0)
            print(
                f"  {name:34} READY after {ready:6.1f} s (install {installed:5.1f} s, daemon "
                f"{float(ready) - float(installed):4.1f} s), venv {marks['venv_mb']:.0f} MB, "
                f"{marks['packages']:.0f} packages, pip HTTP cache files "
                f"{marks['pip_http_cache_files']}",
                flush=True,
            )
    now, before = (float(m.get("ready", float("nan"))) for _, m in rows)
    print(f"  ratio: the first make run is READY {before / now:.1f}x sooner")
