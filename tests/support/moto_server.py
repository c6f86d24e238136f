"""A moto server child process for tests: the session's shared one (`moto_endpoint`), and the
variants some tests need a server of their own for (AWS's resharding behaviour, IAM enforcement).

The child is `python -m MODULE HOST PORT`, which exits as soon as its stdin closes, so no server
outlives the test run even when pytest is killed. It is ready once `/moto-api/` answers.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from daemon.core.local_aws import free_port
from tests.support.proc import REPO, base_env


class MotoServer:
    def __init__(self, module: str = "daemon.core.local_aws", **env: str) -> None:
        self.module = module
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "127.0.0.1", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=base_env(**self.env),
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"moto server ({self.module}) did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
