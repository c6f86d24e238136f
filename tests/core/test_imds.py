"""IMDSv2 on EC2: the region and the instance id come from the instance metadata service, token
first (IMDSv1 requests are refused, as on an instance with HttpTokens=required). A real local
aiohttp server stands in for 169.254.169.254."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from daemon.config.errors import ConfigError
from daemon.config.models import AwsConfig
from daemon.core.aws import AwsClients, imds_get, imds_region
from daemon.core.local_aws import free_port

TOKEN = "AQAEAFakeToken=="


@pytest.fixture
async def imds(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[str]]:
    """A metadata service that insists on IMDSv2; yields the requests it saw."""
    seen: list[str] = []
    values = {"instance-id": "i-0123456789abcdef0", "placement/region": "eu-central-1"}

    async def token(request: web.Request) -> web.Response:
        seen.append(f"PUT {request.path}")
        if "X-aws-ec2-metadata-token-ttl-seconds" not in request.headers:
            return web.Response(status=400)
        return web.Response(text=TOKEN)

    async def meta(request: web.Request) -> web.Response:
        seen.append(f"GET {request.path}")
        if request.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return web.Response(status=401)
        value = values.get(request.match_info["path"])
        return web.Response(text=value) if value else web.Response(status=404)

    app = web.Application()
    app.router.add_put("/latest/api/token", token)
    app.router.add_get("/latest/meta-data/{path:.*}", meta)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    try:
        yield seen
    finally:
        await runner.cleanup()


async def test_region_and_instance_id_come_from_imdsv2_with_a_token(imds: list[str]):
    assert await imds_region() == "eu-central-1"
    assert await imds_get("instance-id") == "i-0123456789abcdef0"
    assert imds[:2] == ["PUT /latest/api/token", "GET /latest/meta-data/placement/region"]


async def test_a_missing_value_is_none(imds: list[str]):
    assert await imds_get("tags/instance/Name") is None


async def test_clients_without_a_region_take_the_instances(
    imds: list[str], monkeypatch: pytest.MonkeyPatch
):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    clients = AwsClients(AwsConfig())
    try:
        assert await clients.resolve_region() == "eu-central-1"
    finally:
        await clients.close()


async def test_off_ec2_there_is_no_region_and_the_error_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    assert await imds_region() is None  # nothing listens: refused at once
    clients = AwsClients(AwsConfig())
    try:
        with pytest.raises(ConfigError) as error:
            await clients.resolve_region()
    finally:
        await clients.close()
    assert "aws.region" in str(error.value) and "AWS_REGION" in str(error.value)


async def test_log_names_with_instance_id_use_the_instances(
    imds: list[str], monkeypatch: pytest.MonkeyPatch
):
    from daemon.core import identity

    monkeypatch.setattr(identity, "_instance_id", None)  # one lookup per process: a fresh one
    who = await identity.resolve("prod", ask_imds=True)
    assert who.expand("/awsd/{env}") == "/awsd/prod"
    assert who.expand("{instance_id}-{env}") == "i-0123456789abcdef0-prod"
    assert identity.needs_instance_id("/awsd/{env}", "{instance_id}")
    # Local AWS (or no template naming it) never asks the metadata service.
    monkeypatch.setattr(identity, "_instance_id", None)
    seen = len(imds)
    local = await identity.resolve("local", ask_imds=False)
    assert local.instance_id == identity.hostname() and len(imds) == seen
