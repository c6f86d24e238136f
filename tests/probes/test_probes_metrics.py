"""Probe metrics as Prometheus scrapes them: only the series that apply to an endpoint exist
(blackbox_exporter's behaviour), so TLS alert rules do not fire for plain HTTP, TCP or DNS."""

from __future__ import annotations

import re

from daemon.core.metrics.prometheus import render
from daemon.probes.engine import ProbesWorker
from daemon.probes.metrics import ProbeMetrics
from daemon.probes.result import ProbeResult
from tests.probes.test_probes import tls_server_context
from tests.probes.test_probes_worker import Running, make_services, probes_config
from tests.support.observe import wait_until
from tests.support.servers import probe_app, raw_server, serve

LINE = re.compile(r'^(probe_[a-z_]+)\{endpoint="([^"]+)"')
TLS = {"probe_ssl_earliest_cert_expiry", "probe_ssl_leaf_cert_expiry"}
HTTP = {"probe_http_status_code", "probe_http_content_length", "probe_http_redirects",
        "probe_http_duration_seconds"}  # fmt: skip
COMMON = {"probe_success", "probe_duration_seconds"}


def probe_series(text: str) -> dict[str, set[str]]:
    """endpoint -> names of the probe_* series it has in a Prometheus text exposition."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            out.setdefault(m.group(2), set()).add(m.group(1))
    return out


async def test_only_the_series_that_apply_are_exported(tmp_path, ca, ca_file):
    every = {"interval": 2, "timeout": 1.5}  # the first check comes within one interval
    async with (
        serve(probe_app()) as plain,
        serve(probe_app(), tls_server_context(ca)) as tls,
        raw_server(b"") as port,
    ):
        config = probes_config(tmp_path, {
            "plain": {"url": f"{plain}/ok", **every},
            "secure": {"url": f"{tls}/ok", "tls": {"ca_file": ca_file}, **every},
            "tcp": {"url": f"tcp://127.0.0.1:{port}", **every},
            "dns": {"url": "dns://localhost", **every},
        })  # fmt: skip
        worker = ProbesWorker(config, make_services(tmp_path, config))
        async with Running(worker):
            await wait_until(lambda: len(worker.last) == 4)
            text = render(worker.services.metrics)
    assert all(r.success for r in worker.last.values()), worker.last
    series = probe_series(text)
    assert series["secure"] == COMMON | HTTP | TLS
    assert series["plain"] == COMMON | HTTP
    assert series["tcp"] == COMMON
    assert series["dns"] == COMMON
    expiry = re.search(r'^probe_ssl_earliest_cert_expiry\{endpoint="secure"\} (\S+)$', text, re.M)
    assert expiry is not None and float(expiry.group(1)) > 0


def result(endpoint: str, kind: str, target: str, *, cert: float | None = None) -> ProbeResult:
    return ProbeResult(endpoint=endpoint, kind=kind, target=target, success=True, reason=None,
                       detail="ok", started_at=0.0, duration=0.01, status=200 if kind == "http"
                       else None, cert_expires_at=cert, chain_expires_at=cert)  # fmt: skip


def test_a_reloaded_endpoint_loses_the_series_that_no_longer_apply(tmp_path):
    from daemon.core.metrics import Registry

    registry = Registry()
    ProbeMetrics(registry).observe(result("a", "http", "https://x/", cert=2e9))
    ProbeMetrics(registry).observe(result("b", "http", "http://y/"))
    assert probe_series(render(registry))["a"] == COMMON | HTTP | TLS
    # after a reload (a new worker, the same families): a is now plain HTTP, b a TCP probe
    again = ProbeMetrics(registry)
    again.observe(result("a", "http", "http://x/"))
    again.observe(result("b", "tcp", "tcp://y:1"))
    series = probe_series(render(registry))
    assert series["a"] == COMMON | HTTP
    assert series["b"] == COMMON
