"""The TCP probe: can a connection be opened to host:port within the deadline? (And the DNS
probe's little sibling: it resolves the host first, timed as its own phase.)"""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlsplit

from daemon.config.probes import EndpointConfig
from daemon.probes.result import Check, Phases, ProbeResult, Reason

_FAMILIES = {"auto": socket.AF_UNSPEC, "ip4": socket.AF_INET, "ip6": socket.AF_INET6}


async def probe_tcp(name: str, cfg: EndpointConfig) -> ProbeResult:
    """Resolve, connect, close. Never raises (cancellation aside)."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(cfg.target)
    host, port = parts.hostname or "", parts.port or 0
    started_wall, began = time.time(), loop.time()
    dns = connect = 0.0
    phase = "dns"
    address = None
    reason: Reason | None
    try:
        async with asyncio.timeout(cfg.timeout):
            infos = await loop.getaddrinfo(
                host, port, family=_FAMILIES[cfg.ip_family], type=socket.SOCK_STREAM
            )
            dns = loop.time() - began
            phase = "connect"
            mark = loop.time()
            _, writer = await asyncio.open_connection(
                host=str(infos[0][4][0]), port=port, family=infos[0][0]
            )
            connect = loop.time() - mark
            peer = writer.get_extra_info("peername")
            address = f"{peer[0]}:{peer[1]}" if peer else None
            writer.close()
    except TimeoutError:
        reason, detail = Reason.TIMEOUT, f"no answer within {cfg.timeout:g}s ({phase})"
    except socket.gaierror as exc:
        reason, detail = Reason.DNS, f"cannot resolve {host}: {exc.strerror or exc}"
    except ConnectionRefusedError:
        reason, detail = Reason.REFUSED, f"connection refused by {host}:{port}"
    except OSError as exc:
        reason, detail = Reason.CONNECTION, f"cannot connect to {host}:{port}: {exc.strerror}"
    else:
        duration = loop.time() - began
        checks: tuple[Check, ...] = (Check("connected", True, address or ""),)
        reason, detail = None, f"connected in {duration * 1000:.0f}ms"
        max_latency = cfg.conditions.max_latency
        if max_latency is not None:
            ok = duration <= max_latency
            latency = f"{duration * 1000:.0f}ms (max {max_latency * 1000:.0f}ms)"
            checks += (Check("latency", ok, latency),)
            if not ok:
                reason, detail = Reason.LATENCY, f"latency: {latency}"
        return ProbeResult(
            endpoint=name,
            kind="tcp",
            target=cfg.target,
            success=reason is None,
            reason=reason,
            detail=detail,
            started_at=started_wall,
            duration=duration,
            phases=Phases(dns=dns, connect=connect),
            address=address,
            checks=checks,
        )
    return ProbeResult(
        endpoint=name,
        kind="tcp",
        target=cfg.target,
        success=False,
        reason=reason,
        detail=detail,
        started_at=started_wall,
        duration=loop.time() - began,
        phases=Phases(dns=dns, connect=connect),
    )
