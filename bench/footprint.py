"""Footprint: time to READY=1 and resident memory of a real `awsd` process.

Targets from the product brief: READY ≤ 1 s after start, ≤ 60 MB RSS with every worker running.
Runs the daemon twice: on configs/local.toml (every worker, embedded moto — the moto child is a
separate process and is not counted) and on a minimal config (runtime only), sampling RSS while
it works. Set AWSD_BENCH_SECONDS to sample longer (default 20).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def run(config: Path, seconds: float, env: dict[str, str]) -> dict[str, float]:
    sock_dir = tempfile.mkdtemp(prefix="awsd-fp-")
    address = os.path.join(sock_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
        cwd=REPO,
        env={**env, "NOTIFY_SOCKET": address},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.monotonic() - began
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(rss_mb(proc.pid)[0])
            time.sleep(0.5)
        peak = rss_mb(proc.pid)[1]
        cpu = sum(os.times()[2:4])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        sock.close()
    return {"ready_s": ready, "rss_mb": max(samples), "peak_mb": peak, "cpu_s": cpu}


def main() -> None:
    seconds = float(os.environ.get("AWSD_BENCH_SECONDS", "20"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS", "NOTIFY"))}
    env.update(AWS_EC2_METADATA_DISABLED="true", PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal.toml"
        minimal.write_text(f'env = "bench"\n[health]\nport = 0\n[runtime]\nstate_dir = "{tmp}"\n')
        env_local = {**env, "AWSD_STATE_DIR": str(Path(tmp) / "local")}
        rows = [
            ("runtime only", run(minimal, seconds, env)),
            (
                "configs/local.toml (every worker)",
                run(REPO / "configs/local.toml", seconds, env_local),
            ),
        ]
    print(f"{'config':<36} {'READY s':>8} {'RSS MB':>8} {'peak MB':>8}")
    for name, r in rows:
        print(f"{name:<36} {r['ready_s']:>8.3f} {r['rss_mb']:>8.1f} {r['peak_mb']:>8.1f}")
    print("targets: READY <= 1 s, RSS <= 60 MB with every worker")
