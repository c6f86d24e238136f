"""Probe metrics: blackbox_exporter's names (so existing dashboards and alert rules work) with an
`endpoint` label, plus awsd's own series for CloudWatch (latency statistic sets, check counts by
result) and for the engine itself (start lateness, skipped checks, notifications).

Series are created once per endpoint and kept (the hot path is attribute updates); the families
are process-lifetime, so a reload does not reset them, and a removed endpoint's series go away.
"""

from __future__ import annotations

from daemon.core.metrics import Gauge, Histogram, Registry
from daemon.probes.result import ProbeResult

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENESS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
PHASES = ("resolve", "connect", "tls", "processing", "transfer")
MOUNT_PHASES = ("write", "fsync", "read", "delete")


class _Series:
    """One endpoint's series. The HTTP ones exist only for HTTP probes and the TLS ones only once
    a check saw certificates, as blackbox_exporter omits what does not apply: a 0 would read as
    "expired in 1970" and fire the usual `probe_ssl_earliest_cert_expiry - time() < ...` rule
    for every plain-HTTP, TCP and DNS endpoint (and reach CloudWatch as a data point)."""

    __slots__ = ("cert", "chain", "duration", "http", "latency", "m", "name", "success")

    def __init__(self, m: ProbeMetrics, endpoint: str) -> None:
        self.m, self.name = m, endpoint
        self.success: Gauge = m.success.labels(endpoint=endpoint)
        self.duration: Gauge = m.duration.labels(endpoint=endpoint)
        self.latency: Histogram = m.latency.labels(endpoint=endpoint)
        self.http: _HttpSeries | None = None
        self.chain: Gauge | None = None
        self.cert: Gauge | None = None

    def http_series(self) -> _HttpSeries:
        if self.http is None:
            self.http = _HttpSeries(self.m, self.name)
        return self.http

    def tls(self, chain: float | None, cert: float | None) -> None:
        if chain is not None:
            if self.chain is None:
                self.chain = self.m.chain_expiry.labels(endpoint=self.name)
            self.chain.set(chain)
        if cert is not None:
            if self.cert is None:
                self.cert = self.m.leaf_expiry.labels(endpoint=self.name)
            self.cert.set(cert)


class _HttpSeries:
    __slots__ = ("length", "phases", "redirects", "status")

    def __init__(self, m: ProbeMetrics, endpoint: str) -> None:
        self.status: Gauge = m.status.labels(endpoint=endpoint)
        self.length: Gauge = m.length.labels(endpoint=endpoint)
        self.redirects: Gauge = m.redirects.labels(endpoint=endpoint)
        self.phases = {p: m.phases.labels(endpoint=endpoint, phase=p) for p in PHASES}


class ProbeMetrics:
    def __init__(self, registry: Registry) -> None:
        g, c, h = registry.gauge, registry.counter, registry.histogram
        ep = ("endpoint",)
        self.success = g("probe_success", "Whether the last check succeeded (1) or not (0)", ep)
        self.duration = g("probe_duration_seconds", "How long the last check took", ep)
        self.status = g("probe_http_status_code", "HTTP status of the last check (0: none)", ep)
        self.length = g("probe_http_content_length", "Body bytes of the last check", ep)
        self.redirects = g("probe_http_redirects", "Redirects followed by the last check", ep)
        self.phases = g(
            "probe_http_duration_seconds",
            "Duration of the last check by phase, summed over redirects",
            ("endpoint", "phase"),
        )
        self.chain_expiry = g(
            "probe_ssl_earliest_cert_expiry",
            "Earliest expiry of the certificate chain (unix time)",
            ep,
        )
        self.leaf_expiry = g(
            "probe_ssl_leaf_cert_expiry", "Expiry of the server's own certificate (unix time)", ep
        )
        self.latency = h(
            "awsd_probe_latency_seconds", "Check duration (CloudWatch statistic sets)", ep,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.checks = c(
            "awsd_probe_checks_total", "Checks by result (success or the failure reason)",
            ("endpoint", "result"),
        )  # fmt: skip
        self.lateness = h(
            "awsd_probe_start_lateness_seconds", "How late checks started against their schedule",
            buckets=LATENESS_BUCKETS,
        ).labels()  # fmt: skip
        self.skipped = c("awsd_probe_skipped_total", "Checks skipped (no slot, still running)")
        self.alerts = c("awsd_probe_alerts_total", "Alert notices by event", ("endpoint", "event"))
        self.notifications = c(
            "awsd_probe_notifications_total",
            "Notification messages by outcome: accepted by the outbox, delivered, rejected, "
            "held (probe host offline) or refused (outbox full or invalid)",
            ("status",),
        )
        self.open = g("awsd_probe_alerts_open", "Alerts currently open").labels()
        self.mount_phases = g(
            "awsd_probe_mount_duration_seconds",
            "Mount probes: duration of each file operation of the last check",
            ("endpoint", "phase"),
        )
        self.mount_stuck = g(
            "awsd_probe_mount_stuck",
            "Mount probes: 1 while a file operation outlives its timeout (a hung file server)",
            ep,
        )
        self.mount_stuck_total = c(
            "awsd_probe_mount_stuck_total", "Mount probes: file operations that got stuck", ep
        )
        self._series: dict[str, _Series] = {}

    def observe(self, result: ProbeResult) -> None:
        s = self._series.get(result.endpoint)
        if s is None:
            s = self._series[result.endpoint] = self._new_series(result)
        s.success.set(1.0 if result.success else 0.0)
        s.duration.set(result.duration)
        s.latency.observe(result.duration)
        label = "success" if result.success else str(result.reason)
        self.checks.labels(endpoint=result.endpoint, result=label).inc()
        if result.mount is not None:
            self._observe_mount(result)
        if result.kind != "http":
            return
        h = s.http_series()
        h.status.set(result.status or 0)
        h.length.set(result.size or 0)
        h.redirects.set(result.redirects)
        for name, seconds in result.phases.as_metrics().items():
            h.phases[name].set(seconds)
        if result.chain_expires_at is not None or result.cert_expires_at is not None:
            s.tls(result.chain_expires_at, result.cert_expires_at)

    def _observe_mount(self, result: ProbeResult) -> None:
        assert result.mount is not None
        name = result.endpoint
        stuck = self.mount_stuck.labels(endpoint=name)
        if result.mount.stuck and not stuck.value:
            self.mount_stuck_total.labels(endpoint=name).inc()
        stuck.set(1.0 if result.mount.stuck else 0.0)
        for phase, seconds in result.mount.phases:
            self.mount_phases.labels(endpoint=name, phase=phase).set(seconds)

    def _new_series(self, result: ProbeResult) -> _Series:
        """The first result of an endpoint in this worker. The families outlive a reload, so a
        series left by what the endpoint was before (an HTTPS URL now plain HTTP, an HTTP probe
        now TCP) is dropped here; the ones that still apply come back with the next check."""
        name = result.endpoint
        if result.kind != "http":
            self._forget_http(name)
        if result.cert_expires_at is None and not result.target.startswith("https:"):
            self._forget_tls(name)
        return _Series(self, name)

    def forget(self, endpoint: str) -> None:
        self._series.pop(endpoint, None)
        for family in (self.success, self.duration, self.latency):
            family.remove(endpoint=endpoint)
        self._forget_http(endpoint)
        self._forget_tls(endpoint)
        self.mount_stuck.remove(endpoint=endpoint)
        self.mount_stuck_total.remove(endpoint=endpoint)
        for phase in MOUNT_PHASES:
            self.mount_phases.remove(endpoint=endpoint, phase=phase)

    def _forget_http(self, endpoint: str) -> None:
        for family in (self.status, self.length, self.redirects):
            family.remove(endpoint=endpoint)
        for phase in PHASES:
            self.phases.remove(endpoint=endpoint, phase=phase)

    def _forget_tls(self, endpoint: str) -> None:
        self.chain_expiry.remove(endpoint=endpoint)
        self.leaf_expiry.remove(endpoint=endpoint)
