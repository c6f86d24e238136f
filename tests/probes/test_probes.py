"""The probe engine against real local servers: every failure reason, phases, TLS, the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import trustme

from daemon.core.local_aws import free_port
from daemon.probes.result import Reason
from daemon.probes.tls import not_after
from tests.support.proc import REPO, awsd_cli
from tests.support.servers import check, probe_app, raw_server, serve


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async with serve(probe_app()) as url:
        yield url


# --- HTTP ------------------------------------------------------------------------------------


async def test_a_healthy_endpoint_succeeds_with_phases_status_and_size(prober, site):
    r = await check(prober, f"{site}/ok")
    assert r.success and r.reason is None
    assert r.status == 200 and r.size == len(b"all good")
    assert r.phases.connect > 0 and r.phases.first_byte > 0
    assert r.duration >= r.phases.first_byte
    assert [c.name for c in r.checks] == ["status"]


async def test_a_500_fails_with_reason_status(prober, site):
    r = await check(prober, f"{site}/500")
    assert (r.success, r.reason, r.status) == (False, Reason.STATUS, 500)
    assert "500" in r.detail


async def test_status_sets_and_ranges_accept_what_they_name(prober, site):
    assert (await check(prober, f"{site}/500", conditions={"status": ["2xx", 500]})).success
    assert (await check(prober, f"{site}/500", conditions={"status": ["400-599"]})).success
    r = await check(prober, f"{site}/ok", conditions={"status": ["3xx"]})
    assert r.reason is Reason.STATUS


async def test_a_slow_endpoint_times_out_at_the_hard_deadline(prober, site):
    r = await check(prober, f"{site}/slow?s=5", timeout=0.3, interval=1)
    assert r.reason is Reason.TIMEOUT
    assert "waiting for the response" in r.detail
    assert r.duration < 2


async def test_a_blackholed_port_times_out_while_waiting(prober):
    async with raw_server(None) as port:
        r = await check(prober, f"http://127.0.0.1:{port}/", timeout=0.3, interval=1)
    assert r.reason is Reason.TIMEOUT


async def test_a_closed_port_is_refused(prober):
    r = await check(prober, f"http://127.0.0.1:{free_port()}/")
    assert r.reason is Reason.REFUSED


async def test_an_unknown_host_fails_with_dns(prober):
    # A name the stub resolver refuses itself (a label cannot start with "-"), so no DNS query
    # leaves this machine: the same EAI_NONAME a real unknown name gets.
    r = await check(prober, "http://-no-such-host.invalid/")
    assert r.reason is Reason.DNS


async def test_garbage_instead_of_http_is_a_protocol_failure(prober):
    async with raw_server(b"this is not http\r\n\r\n") as port:
        r = await check(prober, f"http://127.0.0.1:{port}/")
    assert r.reason in (Reason.PROTOCOL, Reason.CONNECTION)


async def test_body_regex_and_negated_regex(prober, site):
    r = await check(prober, f"{site}/maintenance", conditions={"body_not_regex": "(?i)maintenance"})
    assert r.reason is Reason.BODY and "contains" in r.detail
    r = await check(prober, f"{site}/ok", conditions={"body_regex": "good"})
    assert r.success
    r = await check(prober, f"{site}/ok", conditions={"body_regex": "^bad"})
    assert r.reason is Reason.BODY


async def test_json_path_equality(prober, site):
    ok = {"json_path": {"status": "UP", "$.checks[0].ok": True, "checks.length": 1}}
    assert (await check(prober, f"{site}/health", conditions=ok)).success
    r = await check(prober, f"{site}/degraded", conditions={"json_path": {"status": "UP"}})
    assert r.reason is Reason.JSON and '"DOWN"' in r.detail
    r = await check(prober, f"{site}/ok", conditions={"json_path": {"status": "UP"}})
    assert r.reason is Reason.JSON and "not JSON" in r.detail


async def test_header_match(prober, site):
    good = {"headers": {"Content-Type": "application/json"}}
    assert (await check(prober, f"{site}/health", conditions=good)).success
    r = await check(prober, f"{site}/ok", conditions=good)
    assert r.reason is Reason.HEADER
    r = await check(prober, f"{site}/ok", conditions={"headers": {"x-missing": "."}})
    assert r.reason is Reason.HEADER and "missing" in r.detail


async def test_latency_condition(prober, site):
    r = await check(prober, f"{site}/slow?s=0.2", conditions={"max_latency": "50ms"})
    assert r.reason is Reason.LATENCY and r.status == 200


async def test_redirects_are_followed_counted_or_refused(prober, site):
    r = await check(prober, f"{site}/redirect")
    assert r.success and r.redirects == 1 and r.status == 200
    r = await check(prober, f"{site}/redirect", follow_redirects=False)
    assert r.reason is Reason.STATUS and r.status == 302
    r = await check(prober, f"{site}/loop")
    assert r.reason is Reason.REDIRECTS


async def test_a_large_body_is_counted_but_kept_bounded(prober, site):
    r = await check(prober, f"{site}/big", max_body_bytes=1000, conditions={"body_regex": "x"})
    assert r.success and r.size == 300_000


async def test_the_first_failing_condition_names_the_reason_and_every_check_is_reported(
    prober, site
):
    # Only conditions whose outcome does not depend on timing (latency has its own test).
    conditions = {"body_regex": "nope", "headers": {"x-no": "."}}
    r = await check(prober, f"{site}/500", conditions=conditions)
    assert r.reason is Reason.STATUS
    assert [(c.name, c.ok) for c in r.checks] == [
        ("status", False),
        ("header x-no", False),
        ("body", False),
    ]


# --- TLS -------------------------------------------------------------------------------------


def tls_server_context(ca: trustme.CA, days: float = 365) -> ssl.SSLContext:
    now = dt.datetime.now(dt.UTC)
    cert = ca.issue_cert(
        "127.0.0.1", "localhost", not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=days),
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


async def test_tls_trusted_chain_times_the_handshake_and_reads_expiry(prober, ca, ca_file):
    async with serve(probe_app(), tls_server_context(ca, days=90)) as url:
        r = await check(
            prober, f"{url}/ok", tls={"ca_file": ca_file},
            conditions={"cert_expiry_days": 30, "chain_expiry_days": 30},
        )  # fmt: skip
    assert r.success, r.detail
    assert r.phases.tls > 0 and r.tls_version
    assert r.cert_expires_at is not None and r.chain_expires_at is not None
    assert 89 < (r.cert_expires_at - time.time()) / 86400 < 91
    assert r.chain_expires_at <= r.cert_expires_at


async def test_a_certificate_expiring_soon_fails_the_leaf_condition(prober, ca, ca_file):
    async with serve(probe_app(), tls_server_context(ca, days=5)) as url:
        r = await check(prober, f"{url}/ok", tls={"ca_file": ca_file},
                        conditions={"cert_expiry_days": 14})  # fmt: skip
        assert r.reason is Reason.CERTIFICATE and "expires in 5.0 days" in r.detail
        r = await check(prober, f"{url}/ok", tls={"ca_file": ca_file},
                        conditions={"chain_expiry_days": 14})  # fmt: skip
        assert r.reason is Reason.CERTIFICATE and r.checks[-1].name == "chain"
        r = await check(prober, f"{url}/ok", tls={"ca_file": ca_file},
                        conditions={"cert_expiry_days": 3})  # fmt: skip
        assert r.success


async def test_an_untrusted_chain_fails_with_certificate(prober, ca):
    async with serve(probe_app(), tls_server_context(ca)) as url:
        r = await check(prober, f"{url}/ok")  # the system CAs do not know this CA
        assert r.reason is Reason.CERTIFICATE
        assert "certificate" in r.detail
        # Without verification it passes, and the expiry is still read.
        r = await check(prober, f"{url}/ok", tls={"verify": False},
                        conditions={"cert_expiry_days": 30})  # fmt: skip
        assert r.success and r.cert_expires_at is not None


async def test_tls_to_a_plain_http_server_fails_the_handshake(prober, site):
    r = await check(prober, site.replace("http://", "https://") + "/ok")
    assert r.reason is Reason.TLS


def test_not_after_reads_der_certificates(ca):
    cert = ca.issue_cert("example.com", not_after=dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=dt.UTC))
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    assert not_after(der) == dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=dt.UTC).timestamp()
    assert not_after(b"\x30\x03junk") is None


# --- TCP and DNS -----------------------------------------------------------------------------


async def test_tcp_probe_connects_or_is_refused(prober, site):
    port = int(site.rsplit(":", 1)[1])
    r = await check(prober, f"tcp://127.0.0.1:{port}")
    assert r.success and r.kind == "tcp" and r.phases.connect > 0
    r = await check(prober, f"tcp://127.0.0.1:{free_port()}")
    assert r.reason is Reason.REFUSED


async def test_dns_probe_resolves_and_checks_answers(prober):
    r = await check(prober, "dns://localhost", conditions={"answers": ["127.0.0.1"]})
    assert r.success and "127.0.0.1" in (r.address or "")
    r = await check(prober, "dns://localhost", conditions={"answers": ["10.9.9.9"]})
    assert r.reason is Reason.ANSWER
    r = await check(prober, "dns://-no-such-host.invalid")  # refused locally, no query sent
    assert r.reason is Reason.DNS


# --- cancellation ----------------------------------------------------------------------------


async def test_cancelling_a_probe_in_flight_leaks_nothing(prober):
    async with raw_server(None) as port:
        task = asyncio.create_task(check(prober, f"http://127.0.0.1:{port}/", timeout=5))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # the conftest's no_leaked_tasks fixture fails this test if anything is left pending


# --- the one-shot CLI ------------------------------------------------------------------------


def awsd_probe(*args: str) -> subprocess.CompletedProcess[str]:
    return awsd_cli("probe", *args)


@pytest.fixture(scope="module")
def http_site() -> Iterator[str]:
    """A server in a thread, for the CLI subprocess to probe."""
    import threading

    loop = asyncio.new_event_loop()
    ready: list[str] = []
    stop = asyncio.Event()

    async def main() -> None:
        async with serve(probe_app()) as url:
            ready.append(url)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    while not ready:
        time.sleep(0.01)
    yield ready[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)
    loop.close()


@pytest.mark.slow
def test_cli_prints_the_full_result_and_exits_0_when_up(http_site):
    done = awsd_probe(f"{http_site}/health", "status=2xx", "json.status=UP", "max_latency=5s")
    assert done.returncode == 0, done.stderr
    assert ": UP:" in done.stdout
    for word in ("latency", "status", "size", "phases", "json status"):
        assert word in done.stdout


@pytest.mark.slow
def test_cli_exits_1_with_the_reason_when_down(http_site):
    done = awsd_probe(f"{http_site}/degraded", "json.status=UP", "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["reason"] == "json" and result["status"] == 200


@pytest.mark.slow
def test_cli_rejects_a_bad_condition_clearly(http_site):
    done = awsd_probe(f"{http_site}/ok", "status=7xx")
    assert done.returncode == 2
    assert "conditions.status" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_cli_probes_a_closed_port_as_refused():
    done = awsd_probe(f"tcp://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and "refused" in done.stdout


@pytest.mark.slow
def test_cli_module_stays_light():
    # `awsd --help` and every other command must not pay for aiohttp because of `awsd probe`.
    code = "import sys, daemon.cli.main; print('aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert out.stdout.strip() == "False"
