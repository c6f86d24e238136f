"""The DNS probe: does a name resolve (through the system resolver), to the expected addresses?

It uses getaddrinfo, so it sees what every program on the host sees (/etc/hosts, the stub
resolver, nsswitch); the `answers` condition lists addresses that must be among the results.
"""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlsplit

from daemon.config.probes import EndpointConfig
from daemon.probes.result import Check, Phases, ProbeResult, Reason

_FAMILIES = {"auto": socket.AF_UNSPEC, "ip4": socket.AF_INET, "ip6": socket.AF_INET6}


def dns_name(url: str) -> str:
    parts = urlsplit(url)
    return parts.hostname or parts.path.strip("/")


async def probe_dns(name: str, cfg: EndpointConfig) -> ProbeResult:
    loop = asyncio.get_running_loop()
    host = dns_name(cfg.target)
    started_wall, began = time.time(), loop.time()
    answers: list[str] = []
    reason: Reason | None = None
    checks: tuple[Check, ...] = ()
    try:
        async with asyncio.timeout(cfg.timeout):
            infos = await loop.getaddrinfo(
                host, None, family=_FAMILIES[cfg.ip_family], type=socket.SOCK_STREAM
            )
        answers = sorted({str(info[4][0]) for info in infos})
        detail = f"{host} -> {', '.join(answers)}"
        missing = [a for a in cfg.conditions.answers if a not in answers]
        checks = tuple(Check(f"answer {a}", a in answers, "") for a in cfg.conditions.answers)
        if missing:
            reason, detail = Reason.ANSWER, f"{host} -> {', '.join(answers)}; missing {missing}"
    except TimeoutError:
        reason, detail = Reason.TIMEOUT, f"no answer for {host} within {cfg.timeout:g}s"
    except socket.gaierror as exc:
        reason, detail = Reason.DNS, f"cannot resolve {host}: {exc.strerror or exc}"
    duration = loop.time() - began
    return ProbeResult(
        endpoint=name,
        kind="dns",
        target=cfg.target,
        success=reason is None,
        reason=reason,
        detail=detail,
        started_at=started_wall,
        duration=duration,
        phases=Phases(dns=duration),
        address=", ".join(answers) or None,
        checks=checks,
    )
