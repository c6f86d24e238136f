"""The HTTP probe: one request with a hard deadline, timed per phase, judged by the conditions.

Every check opens a fresh connection (no keep-alive, no DNS cache), as blackbox_exporter does,
so DNS, connect and TLS are measured and their failures seen each time. Phases come from
aiohttp's TraceConfig (DNS, connection, response headers) and from the TLS handshake recorder in
`tls`; they are summed over redirects. Failures are classified into `Reason` values from the
exception aiohttp raises, never from message text.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from daemon import __version__
from daemon.config.probes import EndpointConfig
from daemon.probes.conditions import Conditions, Response
from daemon.probes.result import Phases, ProbeResult, Reason
from daemon.probes.tls import Certificates, certificates, context_for, track_handshakes

USER_AGENT = f"awsd-probe/{__version__}"
MAX_REDIRECTS = 10
_FAMILIES = {"auto": socket.AF_UNSPEC, "ip4": socket.AF_INET, "ip6": socket.AF_INET6}


@dataclass
class _Timings:
    """Filled by the trace callbacks of one check (monotonic clock)."""

    phase: str = "connect"
    dns: float = 0.0
    dns_started: float = 0.0
    connecting: float = 0.0
    connections: float = 0.0
    hop_ready: float = 0.0
    first_byte: float = 0.0
    headers_at: float = 0.0
    transfer: float = 0.0


def _now() -> float:
    return time.monotonic()


async def _on_request_start(_: Any, ctx: Any, __: Any) -> None:
    t: _Timings = ctx.trace_request_ctx
    t.hop_ready = _now()
    t.phase = "connect"


async def _on_dns_start(_: Any, ctx: Any, __: Any) -> None:
    t: _Timings = ctx.trace_request_ctx
    t.dns_started, t.phase = _now(), "dns"


async def _on_dns_end(_: Any, ctx: Any, __: Any) -> None:
    t: _Timings = ctx.trace_request_ctx
    t.dns += _now() - t.dns_started
    t.phase = "connect"


async def _on_connection_start(_: Any, ctx: Any, __: Any) -> None:
    t: _Timings = ctx.trace_request_ctx
    t.connecting, t.phase = _now(), "connect"


async def _on_connection_end(_: Any, ctx: Any, __: Any) -> None:
    t: _Timings = ctx.trace_request_ctx
    now = _now()
    t.connections += now - t.connecting
    t.hop_ready, t.phase = now, "waiting for the response"


async def _on_headers(_: Any, ctx: Any, __: Any) -> None:
    t: _Timings = ctx.trace_request_ctx
    now = _now()
    t.first_byte += now - t.hop_ready
    t.headers_at, t.phase = now, "reading the body"


def trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_on_request_start)
    trace.on_dns_resolvehost_start.append(_on_dns_start)
    trace.on_dns_resolvehost_end.append(_on_dns_end)
    trace.on_connection_create_start.append(_on_connection_start)
    trace.on_connection_create_end.append(_on_connection_end)
    trace.on_request_redirect.append(_on_headers)
    trace.on_request_end.append(_on_headers)
    return trace


class _Attempt:
    """One check in progress: what the trace and the handshakes recorded so far."""

    def __init__(self, name: str, cfg: EndpointConfig, started_wall: float, began: float) -> None:
        self.name = name
        self.cfg = cfg
        self.started_wall = started_wall
        self.began = began
        self.end = began
        self.t = _Timings()
        self.handshakes = track_handshakes()
        self.address: str | None = None
        self.certs = Certificates(None, None, None)

    def phases(self) -> Phases:
        t = self.t
        tls = sum(h.handshake_seconds for h in self.handshakes)
        return Phases(
            dns=t.dns,
            connect=max(0.0, t.connections - t.dns - tls),
            tls=tls,
            first_byte=t.first_byte,
            transfer=t.transfer,
        )

    def failed(self, reason: Reason, detail: str) -> ProbeResult:
        certs = self.certs
        return ProbeResult(
            endpoint=self.name,
            kind="http",
            target=self.cfg.target,
            success=False,
            reason=reason,
            detail=detail,
            started_at=self.started_wall,
            duration=asyncio.get_running_loop().time() - self.began,
            phases=self.phases(),
            address=self.address,
            tls_version=certs.version,
            cert_expires_at=certs.leaf_expires_at,
            chain_expires_at=certs.chain_expires_at,
        )


class HttpProber:
    """Runs HTTP checks; one client session per address family, shared by every endpoint."""

    def __init__(self) -> None:
        self._sessions: dict[socket.AddressFamily, aiohttp.ClientSession] = {}
        self._trace = trace_config()

    def _session(self, family: socket.AddressFamily) -> aiohttp.ClientSession:
        session = self._sessions.get(family)
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=0, force_close=True, use_dns_cache=False, family=family
            )
            session = aiohttp.ClientSession(
                connector=connector,
                trace_configs=[self._trace],
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
            )
            self._sessions[family] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def probe(self, name: str, cfg: EndpointConfig, conditions: Conditions) -> ProbeResult:
        """Check once; never raises (cancellation aside): every failure is a result."""
        attempt = _Attempt(name, cfg, time.time(), asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(cfg.timeout):
                answer = await self._request(cfg, attempt)
        except TimeoutError:
            timeout = f"no answer within {cfg.timeout:g}s ({attempt.t.phase})"
            return attempt.failed(Reason.TIMEOUT, timeout)
        except aiohttp.ClientError as exc:
            return attempt.failed(*classify(exc))
        except (OSError, ValueError, ssl.SSLError) as exc:
            return attempt.failed(Reason.ERROR, f"{type(exc).__name__}: {exc}")
        status, headers, body, size, redirects = answer
        duration = attempt.end - attempt.began
        certs = attempt.certs
        verdict = conditions.evaluate(
            Response(
                status=status,
                headers=headers,
                body=body,
                duration=duration,
                cert_expires_at=certs.leaf_expires_at,
                chain_expires_at=certs.chain_expires_at,
                now=time.time(),
            )
        )
        summary = f"{status} in {duration * 1000:.0f}ms, {size} bytes"
        return ProbeResult(
            endpoint=name,
            kind="http",
            target=cfg.target,
            success=verdict.reason is None,
            reason=verdict.reason,
            detail=verdict.detail or summary,
            started_at=attempt.started_wall,
            duration=duration,
            phases=attempt.phases(),
            status=status,
            size=size,
            redirects=redirects,
            address=attempt.address,
            tls_version=certs.version,
            cert_expires_at=certs.leaf_expires_at,
            chain_expires_at=certs.chain_expires_at,
            checks=verdict.checks,
        )

    async def _request(
        self, cfg: EndpointConfig, attempt: _Attempt
    ) -> tuple[int, Any, bytes, int, int]:
        session = self._session(_FAMILIES[cfg.ip_family])
        async with session.request(
            cfg.method,
            cfg.target,
            headers=cfg.headers or None,
            data=cfg.body.encode() if cfg.body is not None else None,
            allow_redirects=cfg.follow_redirects,
            max_redirects=MAX_REDIRECTS,
            ssl=context_for(cfg.tls),  # used only for https (also after a redirect to it)
            trace_request_ctx=attempt.t,
        ) as resp:
            # A short body may already have released the connection: the address is read when
            # it is still there; certificates come from the last handshake this check made.
            transport = resp.connection.transport if resp.connection else None
            peer = transport.get_extra_info("peername") if transport else None
            if peer:
                attempt.address = f"{peer[0]}:{peer[1]}"
            if attempt.handshakes:
                attempt.certs = certificates(attempt.handshakes[-1], cfg.tls.verify)
            body, size = await _read_body(resp, cfg.max_body_bytes)
            attempt.t.transfer = _now() - attempt.t.headers_at
            # Latency ends with the body: closing the connection afterwards is not the server's.
            attempt.end = asyncio.get_running_loop().time()
            return resp.status, resp.headers, body, size, len(resp.history)


async def _read_body(resp: aiohttp.ClientResponse, keep: int) -> tuple[bytes, int]:
    kept = bytearray()
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        room = keep - len(kept)
        if room > 0:
            kept += chunk[:room]
    return bytes(kept), size


def classify(exc: aiohttp.ClientError) -> tuple[Reason, str]:
    """A reason and a human line for an aiohttp failure (by type, never by message)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return Reason.CERTIFICATE, f"certificate not accepted: {_ssl_text(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return Reason.TLS, f"TLS handshake failed: {_ssl_text(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _connect_reason(exc)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return Reason.REDIRECTS, f"more than {MAX_REDIRECTS} redirects"
    if isinstance(exc, aiohttp.ClientResponseError):
        return Reason.PROTOCOL, f"invalid HTTP response: {exc.message}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Reason.PROTOCOL, f"body cut short: {exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Reason.CONNECTION, "server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientOSError):
        return Reason.CONNECTION, f"connection failed: {exc.strerror or exc}"
    if isinstance(exc, aiohttp.InvalidURL):
        return Reason.ERROR, f"invalid URL: {exc}"
    return Reason.ERROR, f"{type(exc).__name__}: {exc}"


def _connect_reason(exc: aiohttp.ClientConnectorError) -> tuple[Reason, str]:
    os_error = exc.os_error
    where = f"{exc.host}:{exc.port}"
    if isinstance(os_error, socket.gaierror) or type(exc).__name__ == "ClientConnectorDNSError":
        return Reason.DNS, f"cannot resolve {exc.host}: {os_error.strerror or os_error}"
    if isinstance(os_error, ConnectionRefusedError):
        return Reason.REFUSED, f"connection refused by {where}"
    return Reason.CONNECTION, f"cannot connect to {where}: {os_error.strerror or os_error}"


def _ssl_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    inner = getattr(exc, "os_error", None) or exc
    reason = getattr(inner, "reason", None)
    return str(reason or inner)
