"""The one way awsd builds AWS clients, and the one way it classifies AWS errors.

One aioboto3 session per config; clients are created lazily per service (and per read timeout,
for long polls), shared by every worker, counted per API call, and closed together on reload or
shutdown. Endpoint precedence: `aws.endpoints.<service>`, `aws.endpoint_url`, the embedded local
endpoint, then botocore's own AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import aiohttp
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from daemon import __version__
from daemon.base.awserrors import describe_error
from daemon.config.errors import ConfigError
from daemon.config.models import AwsConfig
from daemon.core.aws_fast import FastParserFactory
from daemon.core.aws_lean import SharedTlsSession, install_lean_loader
from daemon.core.logs import get_logger
from daemon.core.metrics import Registry

log = get_logger()

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
IMDS_ENDPOINT = "http://169.254.169.254"
REQUEST_COMPRESSION_FROM = 1024


class AwsClients:
    """Lazily created, shared aiobotocore clients for one AWS configuration."""

    def __init__(
        self, cfg: AwsConfig, *, local_endpoint: str | None = None, metrics: Registry | None = None
    ) -> None:
        import aioboto3  # noqa: PLC0415 - heavy import, only once clients are needed

        self.cfg = cfg
        self.local_endpoint = local_endpoint
        creds = LOCAL_CREDENTIALS if local_endpoint else {}
        self._session = aioboto3.Session(profile_name=cfg.profile, **creds)
        install_lean_loader(self._session._session)
        # Kinesis records parsed without botocore's model walk (see aws_fast.py), and timestamps
        # as UTC datetimes, parsed without dateutil's local-zone lookups: botocore's default
        # costs ~20 µs per value, which dominated reading Kinesis records.
        parsers = FastParserFactory()
        parsers.set_parser_defaults(timestamp_parser=parse_timestamp)
        self._session._session.register_component("response_parser_factory", parsers)
        self.region: str | None = cfg.region or self._session.region_name
        if local_endpoint and not self.region:
            self.region = "us-east-1"
        self._clients: dict[tuple[str, float | None], Any] = {}
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._calls = (
            metrics.counter(
                "awsd_aws_api_calls_total",
                "AWS API calls made, by service and operation (what awsd costs you)",
                ("service", "operation"),
            )
            if metrics
            else None
        )

    def endpoint_for(self, service: str) -> str | None:
        return (
            self.cfg.endpoints.get(service)  # type: ignore[call-overload]
            or self.cfg.endpoint_url
            or self.local_endpoint
        )

    async def resolve_region(self) -> str:
        """The region from config, the standard chain, or IMDSv2; ConfigError when none."""
        if self.region:
            return self.region
        if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
            self.region = await imds_region()
        if not self.region:
            raise ConfigError.one(
                "aws.region",
                "no AWS region: set aws.region, AWS_REGION, a profile region, or "
                "run on EC2 where the instance metadata service tells it",
            )
        return self.region

    async def client(self, service: str, *, read_timeout: float | None = None) -> Any:
        """The shared client for `service`; a longer `read_timeout` gets its own (long polls)."""
        key = (service, read_timeout)
        found = self._clients.get(key)
        if found is not None:
            return found
        async with self._lock:
            if key not in self._clients:
                self._clients[key] = await self._create(service, read_timeout)
        return self._clients[key]

    async def _create(self, service: str, read_timeout: float | None) -> Any:
        from aiobotocore.config import AioConfig  # noqa: PLC0415 - with aioboto3, above

        region = await self.resolve_region()
        boto_cfg = AioConfig(
            http_session_cls=SharedTlsSession,
            region_name=region,
            # botocore's `max_attempts` counts retries; `total_max_attempts` counts the first call
            # too, as `aws.max_attempts` (and AWS_MAX_ATTEMPTS) do.
            retries={"mode": self.cfg.retry_mode, "total_max_attempts": self.cfg.max_attempts},
            connect_timeout=self.cfg.connect_timeout,
            read_timeout=read_timeout or self.cfg.read_timeout,
            max_pool_connections=self.cfg.max_pool_connections,
            user_agent_extra=f"awsd/{__version__}",
            # botocore gzips request bodies of the operations that accept it (CloudWatch
            # PutMetricData) from 10 KiB by default; a batch of metrics already shrinks ~5x
            # from 1 KiB, so compress from there (CloudWatch Logs does its own, see
            # daemon/telemetry/log_shipper.py).
            request_min_compression_size_bytes=REQUEST_COMPRESSION_FROM,
        )
        client = await self._stack.enter_async_context(
            self._session.client(service, endpoint_url=self.endpoint_for(service), config=boto_cfg)
        )
        if self._calls is not None:
            calls = self._calls

            def count(model: Any, **_: Any) -> None:
                calls.labels(service=service, operation=model.name).inc()

            client.meta.events.register("before-call.*.*", count)
        return client

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        try:
            await self._stack.aclose()
        except Exception as exc:  # noqa: BLE001 - closing must not fail a shutdown
            log.warning(
                "closing AWS clients failed", error=describe_error(exc), clients=len(clients)
            )


def parse_timestamp(value: Any) -> datetime:
    """A response timestamp as an aware UTC datetime (epoch seconds fast, anything else through
    botocore's own parser)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError):
        return botocore_parse_timestamp(value).astimezone(UTC)  # type: ignore[no-any-return]


async def imds_region(timeout: float = 1.0) -> str | None:
    """Ask the EC2 instance metadata service (IMDSv2, token first) for the region."""
    return await imds_get("placement/region", timeout)


async def imds_get(path: str, timeout: float = 1.0) -> str | None:
    """One IMDSv2 metadata value (`instance-id`, `placement/region`); None off EC2, or when
    AWS_EC2_METADATA_DISABLED is true."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS_ENDPOINT).rstrip("/")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.put(
                f"{endpoint}/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
            ) as resp:
                token = await resp.text()
            async with http.get(
                f"{endpoint}/latest/meta-data/{path}",
                headers={"X-aws-ec2-metadata-token": token},
            ) as resp:
                return (await resp.text()).strip() if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
