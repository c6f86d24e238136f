"""TLS for probes: contexts per endpoint settings, handshake timing, certificate expiry.

Why a custom `SSLObject`: aiohttp reports one "connection created" span that hides the TLS
handshake inside TCP connect. Setting `SSLContext.sslobject_class` (a public hook used by both
asyncio's and uvloop's TLS transports) lets every handshake record when it began and ended, and
register itself with the check that opened it (through a context variable the transport's
callbacks inherit from the probing task), so a check sums the handshakes of all its redirects
and reads the certificates of the final connection.

Certificate expiry is read from DER: the leaf from `getpeercert(binary_form=True)` and the chain
from the SSL object's verified chain (public in Python 3.13, a method of the underlying `_ssl`
object before), so it also works when verification is off (then the chain the server sent).
"""

from __future__ import annotations

import calendar
import contextvars
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from daemon.config.probes import TlsConfig

_CHECK: contextvars.ContextVar[list[TimedSSLObject] | None] = contextvars.ContextVar(
    "awsd_probe_handshakes", default=None
)


class TimedSSLObject(ssl.SSLObject):
    """An SSLObject that records its handshake span (loop-independent monotonic clock)."""

    handshake_started: float | None = None
    handshake_done: float | None = None

    def do_handshake(self) -> None:
        if self.handshake_started is None:
            self.handshake_started = time.monotonic()
            owners = _CHECK.get()
            if owners is not None:
                owners.append(self)
        super().do_handshake()
        self.handshake_done = time.monotonic()

    @property
    def handshake_seconds(self) -> float:
        if self.handshake_started is None or self.handshake_done is None:
            return 0.0
        return self.handshake_done - self.handshake_started


def track_handshakes() -> list[TimedSSLObject]:
    """Start collecting the handshakes made by the current task (and what it spawns)."""
    handshakes: list[TimedSSLObject] = []
    _CHECK.set(handshakes)
    return handshakes


@lru_cache(maxsize=256)
def context_for(tls: TlsConfig) -> ssl.SSLContext:
    """One context per distinct TLS setting (they are costly to build and safe to share)."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    context.sslobject_class = TimedSSLObject
    return context


@dataclass(frozen=True, slots=True)
class Certificates:
    leaf_expires_at: float | None
    chain_expires_at: float | None
    version: str | None


def certificates(ssl_object: Any, verified: bool) -> Certificates:
    """Expiry of the leaf and the earliest of the chain, from a completed handshake."""
    if ssl_object is None:
        return Certificates(None, None, None)
    leaf = ssl_object.getpeercert(binary_form=True)
    leaf_expiry = not_after(leaf) if leaf else None
    chain = [not_after(der) for der in _chain(ssl_object, verified)]
    known = [t for t in (*chain, leaf_expiry) if t is not None]
    return Certificates(leaf_expiry, min(known) if known else None, ssl_object.version())


def _chain(ssl_object: Any, verified: bool) -> list[bytes]:
    name = "get_verified_chain" if verified else "get_unverified_chain"
    public = getattr(ssl_object, name, None)  # Python >= 3.13: a list of DER bytes
    if public is not None:
        return [bytes(c) if isinstance(c, bytes | bytearray) else _der(c) for c in public() or []]
    inner = getattr(getattr(ssl_object, "_sslobj", None), name, None)
    if inner is None:
        return []
    return [_der(c) for c in inner() or []]


def _der(cert: Any) -> bytes:
    return bytes(cert.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]


def not_after(der: bytes) -> float | None:
    """The notAfter of an X.509 certificate in DER, as epoch seconds (None if unreadable)."""
    try:
        _, start, _ = _tlv(der, 0)  # Certificate
        _, tbs, _ = _tlv(der, start)  # TBSCertificate
        i = tbs
        if der[i] == 0xA0:  # [0] version
            i = _tlv(der, i)[2]
        for _ in range(3):  # serialNumber, signature, issuer
            i = _tlv(der, i)[2]
        _, validity, _ = _tlv(der, i)
        not_before_end = _tlv(der, validity)[2]
        tag, begin, end = _tlv(der, not_before_end)
        return _asn1_time(tag, der[begin:end].decode("ascii"))
    except (IndexError, ValueError):
        return None


def _tlv(data: bytes, i: int) -> tuple[int, int, int]:
    tag, length = data[i], data[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[i : i + n], "big")
        i += n
    return tag, i, i + length


def _asn1_time(tag: int, text: str) -> float:
    text = text.rstrip("Z")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSS, years 1950-2049
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime: YYYYMMDDHHMMSS
        raise ValueError(f"not a time (tag {tag:#x})")
    parsed = time.strptime(text[:14], "%Y%m%d%H%M%S")
    return float(calendar.timegm(parsed))
