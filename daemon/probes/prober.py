"""One entry point for a check of any kind: `Prober.check(name, endpoint) -> ProbeResult`.

It picks the probe by the endpoint's kind (`EndpointConfig.check`: the HTTP, TCP or DNS probe by
the URL's scheme, or the mount probe), compiles each endpoint's conditions once, and turns
anything unexpected into a result with reason `error`, so the scheduler and the alert machine
only ever see values. A new kind of probe is one module and one line in `_run`.
"""

from __future__ import annotations

import asyncio
import time

from daemon.config.probes import EndpointConfig
from daemon.core.logs import get_logger
from daemon.probes.conditions import Conditions
from daemon.probes.dns import probe_dns
from daemon.probes.http import HttpProber
from daemon.probes.mount import MountProber
from daemon.probes.result import ProbeResult, Reason
from daemon.probes.tcp import probe_tcp

log = get_logger()


class Prober:
    def __init__(self, *, mount: MountProber | None = None) -> None:
        self.http = HttpProber()
        self.mount = mount or MountProber()
        self._conditions: dict[str, tuple[EndpointConfig, Conditions]] = {}

    async def _run(self, name: str, cfg: EndpointConfig) -> ProbeResult:
        kind = cfg.check
        if kind == "mount":
            return await self.mount.probe(name, cfg)
        if kind == "tcp":
            return await probe_tcp(name, cfg)
        if kind == "dns":
            return await probe_dns(name, cfg)
        return await self.http.probe(name, cfg, self._compiled(name, cfg))

    async def check(self, name: str, cfg: EndpointConfig) -> ProbeResult:
        started, began = time.time(), asyncio.get_running_loop().time()
        try:
            return await self._run(name, cfg)
        except Exception as exc:  # a probe bug must not stop the other probes
            log.error("probe failed unexpectedly", endpoint=name, exc_info=exc)
            return ProbeResult(
                endpoint=name,
                kind=cfg.check,
                target=cfg.target,
                success=False,
                reason=Reason.ERROR,
                detail=f"{type(exc).__name__}: {exc}",
                started_at=started,
                duration=asyncio.get_running_loop().time() - began,
            )

    def _compiled(self, name: str, cfg: EndpointConfig) -> Conditions:
        cached = self._conditions.get(name)
        if cached is None or cached[0] is not cfg:
            cached = (cfg, Conditions(cfg.conditions))
            self._conditions[name] = cached
        return cached[1]

    async def close(self) -> None:
        await self.http.close()
