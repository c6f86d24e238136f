"""The `[probes]` section: endpoints awsd checks, what counts as healthy, and who hears about it.

Settings shared by every endpoint live once in `[probes.defaults]`; an endpoint
(`[probes.endpoints.NAME]`) writes only what differs. `ProbesConfig.endpoint(name)` lays the
endpoint over the defaults (tables merge key by key, like config overlays) and validates the
result, so the probe engine only ever sees complete, checked `EndpointConfig` values.

    [probes.defaults]
    interval = 60
    alert = { topic = "alerts", sms = ["+14155550100"] }

    [probes.endpoints.shop]
    url = "https://shop.example.com/health"
    conditions = { status = ["2xx"], max_latency = 0.8, json_path = { "status" = "UP" } }
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from daemon.base.fields import Name, PhoneNumber, Section, TopicRef, host_problem, url_problem

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_STATUS = re.compile(r"^([1-5])xx$|^(\d{3})(?:-(\d{3}))?$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIN_REMINDER = 300.0


def _duration(value: Any) -> Any:
    """Seconds as a number, or text with a unit: `250ms`, `10s`, `5m`, `1h`, `7d`."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (write seconds, or 250ms, 10s, 5m, 1h)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds, or a string with a unit (`250ms`, `30s`, `5m`, `1h`, `7d`)."""


def _status_spec(value: Any) -> str:
    text = str(value).strip().lower()
    match = _STATUS.match(text)
    if not match:
        raise ValueError(f"not a status code, range or class: {value!r} (write 200, 200-299, 2xx)")
    if match.group(3) and int(match.group(3)) < int(match.group(2)):
        raise ValueError(f"empty status range {value!r}")
    return text


StatusSpec = Annotated[str, BeforeValidator(_status_spec)]


def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown IANA time zone {value!r} (for example Europe/Paris; install the tzdata "
            "package if the system has no zone database)"
        ) from None
    return value


def _probe_url(value: str) -> str:
    if value.startswith("self:"):  # left unresolved: the health server is off
        raise ValueError(
            f"{value!r} names this daemon's own health server, which is off (health.port = 0); "
            "self: URLs are for [probes.endpoints] only"
        )
    scheme = value.partition("://")[0]
    if scheme not in ("http", "https", "tcp", "dns"):
        raise ValueError(f"{value!r}: the scheme must be http, https, tcp, dns or self")
    if scheme == "dns" and not any(c.isspace() for c in value):
        name = (urlsplit(value).hostname or urlsplit(value).path.strip("/")).rstrip(".")
        problem = host_problem(name) if name else f"a dns probe needs dns://NAME, not {value!r}"
        if problem:
            raise ValueError(problem)
        return value
    problem = url_problem(value, (scheme,))
    if problem:
        raise ValueError(problem)
    if scheme == "tcp" and urlsplit(value).port is None:
        raise ValueError(f"a tcp probe needs tcp://HOST:PORT, not {value!r}")
    return value


ProbeUrl = Annotated[str, AfterValidator(_probe_url)]
"""`http(s)://...` (HTTP probe), `tcp://host:port` (TCP connect), `dns://name` (resolution)."""

SELF = "self:"


def resolve_self_urls(data: Any, health_url: str | None) -> Any:
    """The config's data with every `[probes.endpoints]` URL `self:/PATH` turned into the
    daemon's own health server (`health_url` + PATH), from the resolved `[health]` (files and
    environment overrides), so a self-probe follows the port wherever it moves. With the
    health server off (`health_url` None) the URL stays, and validation says why it cannot be."""
    if not health_url or not isinstance(data, dict):
        return data
    probes = data.get("probes")
    if not isinstance(probes, dict) or not isinstance(probes.get("endpoints"), dict):
        return data
    endpoints: dict[str, Any] = probes["endpoints"]
    resolved = {}
    for name, endpoint in endpoints.items():
        url = endpoint.get("url") if isinstance(endpoint, dict) else None
        if isinstance(url, str) and url.startswith(SELF):
            path = "/" + (url[len(SELF) :].lstrip("/") or "healthz")
            resolved[name] = {**endpoint, "url": health_url + path}
        else:
            resolved[name] = endpoint
    return {**data, "probes": {**probes, "endpoints": resolved}}


class TlsConfig(Section):
    """How an HTTPS probe checks the server, and the client certificate it may present."""

    verify: bool = True
    """Verify the server's certificate chain and host name. Off: any certificate is accepted
    (its expiry is still read and checked by the certificate conditions)."""

    ca_file: str | None = None
    """PEM file of the CAs to trust instead of the system's (a private CA)."""

    client_cert: str | None = None
    """PEM file of a client certificate (mutual TLS); the key may be in the same file."""

    client_key: str | None = None
    """PEM file of the client certificate's key, when not in `client_cert`."""


class ConditionsConfig(Section):
    """What a response must satisfy to count as a success. Unset conditions are not checked."""

    status: list[StatusSpec] = Field(default_factory=lambda: ["2xx"])
    """Accepted status codes: codes (`200`), ranges (`200-399`) and classes (`2xx`)."""

    max_latency: Duration | None = Field(default=None, gt=0)
    """Slowest acceptable total time (seconds or `500ms`); slower is a `latency` failure."""

    body_regex: str | None = None
    """A regular expression the body must contain (searched, not matched whole)."""

    body_not_regex: str | None = None
    """A regular expression the body must not contain (an error page served with 200)."""

    json_path: dict[str, Any] = Field(default_factory=dict)
    """JSON-path equalities on the body: `{ "status" = "UP", "$.checks[0].ok" = true }`. Paths
    are dotted keys with `[index]`, optionally starting with `$.`."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Response headers that must be present and match a regular expression:
    `{ "content-type" = "application/json" }` (names are case-insensitive)."""

    cert_expiry_days: float | None = Field(default=None, ge=0)
    """HTTPS: the server (leaf) certificate must stay valid more than this many days."""

    chain_expiry_days: float | None = Field(default=None, ge=0)
    """HTTPS: every certificate of the verified chain (intermediates and root) must stay valid
    more than this many days; without verification, the chain the server sent."""

    answers: list[str] = Field(default_factory=list)
    """DNS probes: addresses that must be among the answers (empty: any answer will do)."""

    @model_validator(mode="after")
    def _regexes_compile(self) -> ConditionsConfig:
        for field in ("body_regex", "body_not_regex"):
            pattern = getattr(self, field)
            if pattern is not None:
                _compiles(field, pattern)
        for name, pattern in self.headers.items():
            _compiles(f"headers.{name}", pattern)
        return self


def _compiles(where: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regular expression {pattern!r}: {exc}") from None


class MaintenanceWindow(Section):
    """A recurring time when failures open no alert (probing and history go on)."""

    start: str
    """Local start time, `HH:MM` (24 h clock) in `timezone`."""

    duration: Duration = Field(gt=0, le=7 * 86400)
    """How long it lasts (seconds, or `30m`, `2h`)."""

    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"
    """IANA time zone the start time is read in (`Europe/Paris`); daylight saving is honoured:
    02:30 means 02:30 on the wall clock whichever the offset is that day."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS))
    """Days (in `timezone`) the window starts on; default every day."""

    @model_validator(mode="after")
    def _start_format(self) -> MaintenanceWindow:
        if not _HHMM.match(self.start):
            raise ValueError(f"start must be HH:MM (24 h), not {self.start!r}")
        if not self.days:
            raise ValueError("days must name at least one day")
        return self


class AlertConfig(Section):
    """When an endpoint's alert opens, resolves and reminds, and where notifications go."""

    enabled: bool = True
    """Whether this endpoint alerts at all (it is probed either way)."""

    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Consecutive failures that open an alert."""

    success_threshold: int = Field(default=2, ge=1, le=100)
    """Consecutive successes that resolve an open alert."""

    send_on_resolved: bool = True
    """Notify when an alert resolves."""

    reminder_interval: Duration | None = None
    """Repeat the notification of a still-open alert this often (at least 5 minutes);
    unset: no reminders."""

    topic: TopicRef | None = None
    """SNS topic that gets every notification as full JSON: a declared topic's logical name
    (`[resources.topics.<name>]`), or a topic ARN."""

    sms: list[PhoneNumber] = Field(default_factory=list)
    """Phone numbers (E.164) that get a one-line SMS (at most 140 bytes) per notification."""

    @model_validator(mode="after")
    def _reminder_floor(self) -> AlertConfig:
        if self.reminder_interval is not None and self.reminder_interval < MIN_REMINDER:
            raise ValueError(
                f"reminder_interval must be at least {MIN_REMINDER:.0f} s, "
                f"not {self.reminder_interval:g}"
            )
        return self


class ProbeSettings(Section):
    """Settings every endpoint has; `[probes.defaults]` gives them once for all."""

    interval: Duration = Field(default=60.0, ge=0.1, le=86400)
    """Seconds from the start of one check to the start of the next."""

    timeout: Duration = Field(default=10.0, gt=0, le=3600)
    """Hard deadline of one check, everything included; at most 80 % of `interval`."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    """HTTP method."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Request headers (a `User-Agent: awsd-probe/VERSION` is sent unless given)."""

    body: str | None = None
    """Request body (with POST, PUT, PATCH)."""

    follow_redirects: bool = True
    """Follow redirects (up to 10); off: a 3xx is the response the conditions see."""

    ip_family: Literal["auto", "ip4", "ip6"] = "auto"
    """Address family used to connect."""

    tls: TlsConfig = Field(default_factory=TlsConfig)
    """Certificate verification and client certificate for HTTPS."""

    conditions: ConditionsConfig = Field(default_factory=ConditionsConfig)
    """What counts as a success (default: a 2xx status)."""

    alert: AlertConfig = Field(default_factory=AlertConfig)
    """Thresholds, reminders and notification targets."""

    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    """Recurring maintenance windows: alerts are silenced, probing goes on."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=0, le=64 * 1024 * 1024)
    """Body bytes kept for the body and JSON conditions (the rest is read and counted)."""


class EndpointConfig(ProbeSettings):
    """One endpoint to probe; unset fields come from `[probes.defaults]`."""

    kind: Literal["url", "mount"] = "url"
    """What is checked: `url` (HTTP, TCP or DNS, by the scheme of `url`), or `mount` (a file
    system mounted on this host, at `path`)."""

    url: ProbeUrl | None = None
    """`kind = "url"`: what to probe: `https://host/path` (HTTP), `tcp://host:port` (TCP
    connect), `dns://name` (name resolution), or `self:/healthz`: this daemon's own health
    server, wherever `[health]` (or an `AWSD__HEALTH__PORT` override) puts it."""

    path: str | None = None
    """`kind = "mount"`: the mount point (absolute, as `/proc/self/mountinfo` lists it: the
    path itself must be a mount point; symbolic links are not followed)."""

    fs_type: list[str] = Field(default_factory=list)
    """`kind = "mount"`: accepted file system types (`["nfs4"]` for EFS and NFS, `["ext4",
    "vfat"]` for a USB disk); empty: any."""

    fs_id: str | None = Field(default=None, pattern=r"^fs-[0-9a-f]{8,17}$")
    """`kind = "mount"`: the EFS file system id the mount must be (from the mount source, or
    amazon-efs-utils' state for a TLS mount)."""

    probe_dir: str = Field(default=".awsd-probe", min_length=1)
    """`kind = "mount"`: the directory under `path` where a small file is written, synced,
    read and deleted on every check (created when missing)."""

    tags: list[str] = Field(default_factory=list)
    """Free labels (team, tier), shown in status and notifications."""

    @property
    def check(self) -> Literal["http", "tcp", "dns", "mount"]:
        """What a result of this endpoint says it is (`ProbeResult.kind`)."""
        if self.kind == "mount":
            return "mount"
        scheme = urlsplit(self.target).scheme
        return "http" if scheme in ("http", "https") else scheme  # type: ignore[return-value]

    @property
    def target(self) -> str:
        """What is probed, as a URL: the `url`, or `mount://<path>`."""
        if self.kind == "mount":
            return f"mount://{self.path}"
        assert self.url is not None  # validated
        return self.url

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> EndpointConfig:
        mount_fields = {"path", "fs_type", "fs_id", "probe_dir"} & self.model_fields_set
        if self.kind == "url":
            if self.url is None:
                raise ValueError('an endpoint needs a `url` (or kind = "mount" and a `path`)')
            if mount_fields:
                raise ValueError(
                    f'{", ".join(sorted(mount_fields))} go with kind = "mount", not a url'
                )
            return self
        if self.url is not None:
            raise ValueError('kind = "mount" checks a `path`, not a `url`')
        if not self.path or not self.path.startswith("/"):
            raise ValueError('kind = "mount" needs an absolute `path` (the mount point)')
        if self.probe_dir.startswith("/") or ".." in self.probe_dir.split("/"):
            raise ValueError("probe_dir is a relative directory under `path`")
        return self

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> EndpointConfig:
        if self.timeout > 0.8 * self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g}s) must be at most 80% of interval "
                f"({self.interval:g}s), so a check always ends before the next starts"
            )
        return self

    @model_validator(mode="after")
    def _family_fits_a_literal_address(self) -> EndpointConfig:
        host = urlsplit(self.url or "").hostname or ""
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            return self  # a name: the family chooses among its addresses
        wanted = {"ip4": 4, "ip6": 6}.get(self.ip_family)
        if wanted is not None and wanted != version:
            raise ValueError(
                f"ip_family = {self.ip_family!r} cannot reach the IPv{version} address {host}"
            )
        return self


class StormConfig(Section):
    """Protection against alert storms: a self-connectivity guard, and grouping."""

    connectivity: list[ProbeUrl] = Field(default_factory=list)
    """URLs (http, https, tcp, dns) the probe host itself must reach. When every one of them
    fails, the host is offline: per-endpoint alerts are held and one "probe host offline"
    notification is sent instead. Empty: no guard."""

    connectivity_interval: Duration = Field(default=30.0, ge=0.1, le=3600)
    """How often the connectivity URLs are checked."""

    connectivity_timeout: Duration = Field(default=5.0, gt=0, le=60)
    """Deadline of one connectivity check."""

    group_window: Duration = Field(default=10.0, ge=0, le=600)
    """Alerts that open within this many seconds of the first go out as one notification
    ("3 endpoints down: ..."); 0 sends each at once."""


class ProbesConfig(Section):
    """The probe engine: defaults, endpoints, storm control, limits."""

    defaults: ProbeSettings = Field(default_factory=ProbeSettings)
    """Settings every endpoint starts from."""

    endpoints: dict[Name, EndpointConfig] = Field(default_factory=dict)
    """Endpoints by name; each writes only what differs from `defaults` (tables merge key by
    key, except `headers` and `conditions.json_path`, which an endpoint replaces whole)."""

    storm: StormConfig = Field(default_factory=StormConfig)
    """Self-connectivity guard and alert grouping."""

    concurrency: int = Field(default=256, ge=1, le=10_000)
    """Most checks in flight at once, over all endpoints."""

    history: int = Field(default=100, ge=1, le=10_000)
    """Recent results kept per endpoint for /status (uptime ratios use hourly counts)."""

    @model_validator(mode="before")
    @classmethod
    def _lay_endpoints_over_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = data.get("defaults")
        endpoints = data.get("endpoints")
        if not isinstance(defaults, dict) or not isinstance(endpoints, dict):
            return data
        merged = {
            name: _merge(defaults, ep) if isinstance(ep, dict) else ep
            for name, ep in endpoints.items()
        }
        return {**data, "endpoints": merged}


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _REPLACED:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_REPLACED = frozenset({"headers", "json_path"})
"""Tables an endpoint replaces whole rather than merging (its own headers, its own JSON paths)."""
