"""Lean AWS clients: models without documentation text, one TLS context that still verifies."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme
from aiohttp import web
from botocore.exceptions import EndpointConnectionError, SSLError

from daemon.config.models import AwsConfig
from daemon.core.aws import AwsClients
from daemon.core.aws_lean import shared_tls_context


async def test_models_are_plain_dicts_without_documentation_text(moto_endpoint: str):
    clients = AwsClients(AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    try:
        s3 = await clients.client("s3")
        model = s3.meta.service_model
        assert model.operation_model("ListBuckets").documentation == ""
        assert type(model._service_description) is dict
        # botocore reads these with [] (no default): they stay, empty.
        assert all(p.documentation == "" for p in model.client_context_parameters)
        assert "Buckets" in await s3.list_buckets()
    finally:
        await clients.close()


@pytest.fixture
async def tls_sqs(ca: trustme.CA) -> AsyncIterator[str]:
    """An HTTPS endpoint answering SQS ListQueues, with a certificate from the test CA."""

    async def list_queues(_request: web.Request) -> web.Response:
        body = json.dumps({"QueueUrls": ["https://127.0.0.1/000000000000/over-tls"]})
        return web.Response(
            body=body.encode(),
            headers={"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "t"},
        )

    app = web.Application()
    app.router.add_post("/", list_queues)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://localhost:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.mark.usefixtures("credentials")
async def test_the_shared_tls_context_verifies_against_the_configured_ca_bundle(
    tls_sqs: str, ca_file: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_file)
    clients = AwsClients(AwsConfig(region="us-east-1", endpoint_url=tls_sqs, max_attempts=1))
    try:
        for client in (await clients.client("sqs"), await clients.client("sqs", read_timeout=40)):
            assert (await client.list_queues())["QueueUrls"][0].endswith("/over-tls")
        assert shared_tls_context(ca_file) is shared_tls_context(ca_file)
    finally:
        await clients.close()


@pytest.mark.usefixtures("credentials")
async def test_a_certificate_from_an_unknown_ca_is_refused(tls_sqs: str):
    clients = AwsClients(AwsConfig(region="us-east-1", endpoint_url=tls_sqs, max_attempts=1))
    try:
        sqs = await clients.client("sqs")
        with pytest.raises((SSLError, EndpointConnectionError)) as caught:
            await sqs.list_queues()
        assert "certificate verify failed" in str(caught.value).lower()
    finally:
        await clients.close()
