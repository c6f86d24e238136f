"""What one check found, as a value: `ProbeResult`, with its failure reason from one enum.

Everything downstream (alert state machine, history, metrics, notifications, the `awsd probe`
command) reads these values and nothing else, so a result is complete: success, why not, where
the time went (per phase, blackbox_exporter's phase names), what came back, and when the
certificates expire.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Reason(enum.StrEnum):
    """Why a check failed. The order of checks decides which reason wins: the first failure."""

    DNS = "dns"
    """The host name did not resolve."""
    REFUSED = "refused"
    """The connection was refused (nothing listens on the port)."""
    CONNECTION = "connection"
    """The connection failed otherwise: unreachable network, reset, closed early."""
    TIMEOUT = "timeout"
    """The check did not finish within its timeout (the phase it was in is in `detail`)."""
    TLS = "tls"
    """The TLS handshake failed (protocol or cipher mismatch, not a TLS server)."""
    CERTIFICATE = "certificate"
    """The certificate is not trusted, does not match the host, has expired, or expires within
    the days a condition asks for."""
    PROTOCOL = "protocol"
    """The server's answer was not valid HTTP."""
    REDIRECTS = "redirects"
    """Too many redirects."""
    STATUS = "status"
    """The status code is not an accepted one."""
    LATENCY = "latency"
    """The check succeeded but took longer than `max_latency`."""
    BODY = "body"
    """The body does not contain what `body_regex` asks, or contains `body_not_regex`."""
    JSON = "json"
    """The body is not JSON, or a JSON path does not hold the expected value."""
    HEADER = "header"
    """A response header is missing or does not match."""
    ANSWER = "answer"
    """A DNS probe's answers lack an expected address."""
    NOT_MOUNTED = "not_mounted"
    """A mount probe's path is not a mount point (nothing is mounted there)."""
    WRONG_FILESYSTEM = "wrong_filesystem"
    """Something else is mounted there: another file system type, or another EFS id."""
    READ_ONLY = "read_only"
    """The file system is mounted read-only (or refused the write as such)."""
    IO_ERROR = "io_error"
    """Writing, syncing, reading or deleting the probe file failed (`detail` says which)."""
    ERROR = "error"
    """Anything else (a bug or an unusual local failure); `detail` says what."""


@dataclass(frozen=True, slots=True)
class Phases:
    """Seconds per phase, summed over redirects (blackbox_exporter's names in metrics)."""

    dns: float = 0.0
    """Name resolution (`resolve`)."""
    connect: float = 0.0
    """TCP connect (`connect`)."""
    tls: float = 0.0
    """TLS handshake (`tls`)."""
    first_byte: float = 0.0
    """From the request sent to the response headers (`processing`)."""
    transfer: float = 0.0
    """Reading the body (`transfer`)."""

    def as_metrics(self) -> dict[str, float]:
        return {
            "resolve": self.dns,
            "connect": self.connect,
            "tls": self.tls,
            "processing": self.first_byte,
            "transfer": self.transfer,
        }


@dataclass(frozen=True, slots=True)
class MountDetails:
    """What a mount probe found at its path."""

    mounted: bool
    fs_type: str | None = None
    """As `/proc/self/mountinfo` says (`nfs4`, `ext4`)."""
    source: str | None = None
    """The mount source (`fs-0123.efs.eu-west-1.amazonaws.com:/`, `/dev/sda1`)."""
    fs_id: str | None = None
    """The EFS file system id, when the source (or amazon-efs-utils' state) tells it."""
    read_only: bool = False
    stuck: bool = False
    """A file operation of this endpoint has not returned within its timeout (and is still
    running, in its own thread)."""
    phases: tuple[tuple[str, float], ...] = ()
    """Seconds per file operation: write, fsync, read, delete (those that ran)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One condition and how it went, for people reading a result."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one check of one endpoint."""

    endpoint: str
    kind: str
    """`http`, `tcp`, `dns` or `mount`."""
    target: str
    """The URL probed."""
    success: bool
    reason: Reason | None
    """None on success."""
    detail: str
    """One human line: what failed and how, or a summary of the success."""
    started_at: float
    """Wall-clock start (seconds since the epoch), for people."""
    duration: float
    """Seconds from start to end (loop clock)."""
    phases: Phases = field(default_factory=Phases)
    status: int | None = None
    """HTTP status of the final response."""
    size: int | None = None
    """Body bytes received (after decompression)."""
    redirects: int = 0
    address: str | None = None
    """The peer address connected to (or the DNS answers, comma-separated)."""
    tls_version: str | None = None
    cert_expires_at: float | None = None
    """Leaf certificate notAfter (epoch seconds)."""
    chain_expires_at: float | None = None
    """Earliest notAfter in the verified chain (epoch seconds), `probe_ssl_earliest_cert_expiry`."""
    checks: tuple[Check, ...] = ()
    mount: MountDetails | None = None
    """Mount probes: what is mounted at the path and how long each file operation took."""

    @property
    def latency_ms(self) -> int:
        return round(self.duration * 1000)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reason"] = str(self.reason) if self.reason else None
        if self.mount is not None:
            data["mount"]["phases"] = dict(self.mount.phases)
        return data
