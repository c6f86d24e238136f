"""What a probe sends and how it connects: method, headers and body; client certificates
(mutual TLS); the IP family; and the failure reasons of a connection that closes early or an
answer cut short. Real local aiohttp and TCP servers."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from aiohttp import web
from pydantic import ValidationError

from daemon.config.probes import EndpointConfig
from daemon.probes.prober import Prober
from daemon.probes.result import Reason
from tests.support.servers import check, raw_server, serve


def text_app(text: str) -> web.Application:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/ok", ok)
    return app


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "token": request.headers.get("X-Token"),
                "agent": request.headers.get("User-Agent"),
                "body": await request.text(),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    return app


async def test_method_headers_and_body_are_sent_as_declared(prober: Prober):
    async with serve(echo_app()) as url:
        r = await check(
            prober,
            f"{url}/echo",
            method="POST",
            headers={"X-Token": "abc"},
            body='{"ping": 1}',
            conditions={
                "json_path": {"method": "POST", "token": "abc", "body": '{"ping": 1}'},
                "body_regex": '"agent": "awsd-probe/',
            },
        )
        assert r.success, r.detail
        r = await check(prober, f"{url}/echo", conditions={"json_path": {"method": "POST"}})
        assert r.reason is Reason.JSON  # GET by default


# --- mutual TLS ------------------------------------------------------------------------------


@pytest.fixture
def mtls(ca: trustme.CA, tmp_path: Any) -> Iterator[tuple[ssl.SSLContext, str, str]]:
    """A server context that requires a client certificate from `ca`, and the client's
    certificate and key files."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ca.issue_cert("probe@awsd")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"".join(p.bytes() for p in client.cert_chain_pems))
    key.write_bytes(client.private_key_pem.bytes())
    yield server, str(cert), str(key)


async def test_a_client_certificate_is_presented_when_configured(
    prober: Prober, mtls: tuple[ssl.SSLContext, str, str], ca_file: str
):
    server, cert, key = mtls
    app = text_app("hello, probe")
    async with serve(app, server) as url:
        r = await check(
            prober, f"{url}/ok", tls={"ca_file": ca_file, "client_cert": cert, "client_key": key}
        )
        assert r.success, r.detail
        assert r.phases.tls > 0
        # Without one the server ends the handshake: a TLS failure, not a crash.
        r = await check(prober, f"{url}/ok", tls={"ca_file": ca_file})
        assert not r.success
        assert r.reason in (Reason.TLS, Reason.CONNECTION), r.detail


# --- IP family -------------------------------------------------------------------------------


async def test_the_ip_family_decides_which_addresses_are_tried(prober: Prober):
    app = text_app("v4")
    async with serve(app) as url:
        r = await check(prober, f"{url}/ok", ip_family="ip4")
        assert r.success, r.detail
        # An IPv4 literal with ip6 can never work: the config says so, naming the field.
        with pytest.raises(ValidationError, match=r"cannot reach the IPv4 address 127\.0\.0\.1"):
            EndpointConfig(url=f"{url}/ok", ip_family="ip6")
        with pytest.raises(ValidationError, match="cannot reach the IPv6 address ::1"):
            EndpointConfig(url="tcp://[::1]:22", ip_family="ip4")


# --- connection failures ---------------------------------------------------------------------


async def test_a_server_that_closes_without_answering_is_a_connection_failure(prober: Prober):
    async with raw_server(b"") as port:
        r = await check(prober, f"http://127.0.0.1:{port}/")
    assert r.reason is Reason.CONNECTION, r.detail
    assert "closed" in r.detail


async def test_a_half_answer_is_a_protocol_failure(prober: Prober):
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it"
    async with raw_server(reply) as port:
        r = await check(prober, f"http://127.0.0.1:{port}/")
    assert r.reason is Reason.PROTOCOL, r.detail
