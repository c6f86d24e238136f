"""The client factory against a real moto server: endpoints, sharing, call counting, errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from daemon.base.awserrors import describe_error, error_code, is_retryable, is_throttle
from daemon.config.models import AwsConfig
from daemon.core.aws import AwsClients
from daemon.core.local_aws import free_port
from daemon.core.metrics import Registry
from tests.support.aws_front import AwsFront


async def test_clients_are_shared_counted_and_closed(moto_endpoint: str):
    metrics = Registry()
    clients = AwsClients(AwsConfig(region="us-east-1", endpoint_url=moto_endpoint), metrics=metrics)
    try:
        sqs = await clients.client("sqs")
        assert await clients.client("sqs") is sqs
        assert await clients.client("sqs", read_timeout=40) is not sqs
        await sqs.create_queue(QueueName="clients-test")
        urls = (await sqs.list_queues(QueueNamePrefix="clients-test"))["QueueUrls"]
        assert urls and urls[0].endswith("/clients-test")
        calls = metrics.counter("awsd_aws_api_calls_total", "", ("service", "operation"))
        assert calls.labels(service="sqs", operation="CreateQueue").value == 1
        assert calls.labels(service="sqs", operation="ListQueues").value == 1
    finally:
        await clients.close()


async def test_per_service_endpoint_wins_over_the_global_one(moto_endpoint: str):
    cfg = AwsConfig(
        region="us-east-1", endpoint_url="http://127.0.0.1:9", endpoints={"sns": moto_endpoint}
    )
    clients = AwsClients(cfg)
    try:
        assert clients.endpoint_for("sns") == moto_endpoint
        assert clients.endpoint_for("sqs") == "http://127.0.0.1:9"
        sns = await clients.client("sns")
        assert "Topics" in await sns.list_topics()
    finally:
        await clients.close()


async def test_errors_are_classified(moto_endpoint: str):
    clients = AwsClients(AwsConfig(region="us-east-1", endpoint_url=moto_endpoint, max_attempts=1))
    dead = AwsClients(
        AwsConfig(
            region="us-east-1",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            max_attempts=1,
            connect_timeout=0.5,
        )
    )
    try:
        sqs = await clients.client("sqs")
        with pytest.raises(ClientError) as caught:
            await sqs.get_queue_url(QueueName="does-not-exist")
        assert "NonExistentQueue" in (error_code(caught.value) or "")
        assert not is_retryable(caught.value)
        assert "NonExistentQueue" in describe_error(caught.value)

        unreachable = await dead.client("sqs")
        with pytest.raises(EndpointConnectionError) as down:
            await unreachable.list_queues()
        assert is_retryable(down.value) and not is_throttle(down.value)
    finally:
        await clients.close()
        await dead.close()


def test_throttling_codes_are_retryable():
    exc = ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "slow down"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "Publish",
    )
    assert is_throttle(exc) and is_retryable(exc)
    server = ClientError(
        {"Error": {"Code": "Weird"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "Publish"
    )
    assert is_retryable(server) and not is_throttle(server)


async def test_region_comes_from_config_or_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    clients = AwsClients(AwsConfig())
    from daemon.config import ConfigError

    with pytest.raises(ConfigError, match="no AWS region"):
        await clients.resolve_region()
    await clients.close()


async def test_standard_endpoint_variables_are_honoured(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    clients = AwsClients(AwsConfig(region="us-east-1", max_attempts=1))
    try:
        sqs = await clients.client("sqs")
        assert sqs.meta.endpoint_url == moto_endpoint
        await sqs.list_queues()
        sns = await clients.client("sns")
        assert sns.meta.endpoint_url == "http://127.0.0.1:9"
    finally:
        await clients.close()


async def test_retry_mode_attempts_and_timeouts_reach_every_client(moto_endpoint: str):
    default = AwsClients(AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    tuned = AwsClients(
        AwsConfig(
            region="us-east-1",
            endpoint_url=moto_endpoint,
            retry_mode="standard",
            max_attempts=7,
            connect_timeout=1.5,
            read_timeout=12.0,
        )
    )
    try:
        config = (await default.client("sqs")).meta.config
        assert config.retries["mode"] == "adaptive"  # the default: backs off when throttled
        config = (await tuned.client("sqs")).meta.config
        assert config.retries == {"mode": "standard", "total_max_attempts": 7}  # first included
        assert (config.connect_timeout, config.read_timeout) == (1.5, 12.0)
        # A long poll gets its own client with a read timeout above the poll.
        assert (await tuned.client("sqs", read_timeout=25.0)).meta.config.read_timeout == 25.0
    finally:
        await default.close()
        await tuned.close()


async def test_max_attempts_counts_the_first_call(aws_front: AwsFront):
    aws_front.fail("ListQueues", "InternalError", status=500, times=None)
    clients = AwsClients(AwsConfig(region="us-east-1", endpoint_url=aws_front.url, max_attempts=2))
    try:
        sqs = await clients.client("sqs")
        with pytest.raises(ClientError):
            await sqs.list_queues()
    finally:
        await clients.close()
    assert len(aws_front.calls("ListQueues")) == 2  # the call and one retry
