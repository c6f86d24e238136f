"""Shared fixtures: a real moto server, real awsd processes, config files, task-leak checks."""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trustme

from daemon.config.models import Config
from daemon.core.local_aws import free_port
from daemon.outbox import Outbox
from tests.support.aws_front import AwsFront
from tests.support.messaging import Harness, Logs
from tests.support.moto_server import MotoServer
from tests.support.outbox import Delivery, StartDelivery
from tests.support.proc import Awsd, NotifySocket, isolated
from tests.support.proxy import FaultProxy


def pytest_configure(config: pytest.Config) -> None:
    # Nothing in the test run may reach a real AWS account or the instance metadata service.
    environ = isolated(os.environ)
    os.environ.clear()
    os.environ.update(environ)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.add_marker(pytest.mark.usefixtures("no_leaked_tasks"))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Tests that configure the daemon's logging on a stream of their own must not leave later
    tests writing to it."""
    yield
    import logging

    import structlog

    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)


@pytest.fixture
async def no_leaked_tasks() -> Any:
    """Fails an async test that leaves asyncio tasks running behind it."""
    yield
    current = asyncio.current_task()
    for _ in range(3):
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"tasks left pending: {leaked}"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto server process for the whole session (the daemon's own launcher)."""
    server = MotoServer().start()
    yield server.url
    server.stop()


@pytest.fixture
def aws_front(moto_endpoint: str) -> Iterator[AwsFront]:
    """An `AwsFront` before the moto server (AWS errors, stubs, delays, partial batch failures,
    a record of the calls): point a config's `aws.endpoint_url` at its `.url`."""
    front = AwsFront(moto_endpoint).start()
    yield front
    front.stop()


@pytest.fixture
def fault_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A `FaultProxy` before the moto server (refuse, reset, blackhole, delay at the TCP level):
    point a config's `aws.endpoint_url` at its `.url`."""
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy(host, int(port)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def boto(moto_endpoint: str) -> Callable[[str], Any]:
    """Plain boto3 clients on the moto server, for arranging and inspecting AWS state."""
    import boto3

    def make(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    return make


def _merge(into: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


class ConfigFactory:
    """Writes test config files: sensible defaults pointing at the moto server, plus overrides."""

    def __init__(self, tmp_path: Path, moto_endpoint: str | None) -> None:
        self.tmp_path = tmp_path
        self.moto_endpoint = moto_endpoint

    def data(
        self, overrides: dict[str, Any] | None = None, *, health: bool = True
    ) -> dict[str, Any]:
        base: dict[str, Any] = {
            "env": "test",
            "aws": {"region": "us-east-1", "max_attempts": 2, "connect_timeout": 2.0},
            "log": {"level": "info", "format": "json"},
            "health": {"port": free_port() if health else 0},
            "runtime": {"state_dir": str(self.tmp_path / "state"), "shutdown_timeout": 10.0},
        }
        if self.moto_endpoint:
            base["aws"]["endpoint_url"] = self.moto_endpoint
        return _merge(base, copy.deepcopy(overrides or {}))

    def write(
        self,
        overrides: dict[str, Any] | None = None,
        *,
        name: str = "awsd.toml",
        health: bool = True,
    ) -> Path:
        path = self.tmp_path / name
        path.write_text(tomli_w.dumps(self.data(overrides, health=health)))
        return path

    def rewrite(self, path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(tomli_w.dumps(data))
        tmp.replace(path)


@pytest.fixture
def configs(tmp_path: Path, moto_endpoint: str) -> ConfigFactory:
    return ConfigFactory(tmp_path, moto_endpoint)


@pytest.fixture
def offline_configs(tmp_path: Path) -> ConfigFactory:
    """Configs for runtime tests that never touch AWS (no moto server needed)."""
    return ConfigFactory(tmp_path, None)


@pytest.fixture
def awsd() -> Iterator[Callable[..., Awsd]]:
    """Factory for real `awsd run` processes; every one is killed at the end of the test."""
    started: list[Awsd] = []

    def start(
        config: Path,
        *,
        env: dict[str, str] | None = None,
        health_port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> Awsd:
        proc = Awsd(config, env=env, args=args)
        if health_port is None:
            import tomllib

            health_port = tomllib.loads(config.read_text()).get("health", {}).get("port")
        proc.health_port = health_port
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.close()


@pytest.fixture
async def harness(moto_endpoint: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """The workers a config asks for, run in this process on the moto server
    (tests/support/messaging.py); stopped at the end."""
    h = Harness(moto_endpoint, tmp_path)
    yield h
    await h.stop(5.0)


@pytest.fixture
def logs() -> Iterator[Logs]:
    """Every log event of this process during the test (after redaction)."""
    capture = Logs().attach()
    yield capture
    capture.detach()


@pytest.fixture
async def delivery(moto_endpoint: str) -> AsyncIterator[StartDelivery]:
    """Start the outbox delivery worker for an outbox (`delivery(outbox, endpoint=moto,
    config=None)`, tests/support/outbox.py); every one is stopped at the end."""
    started: list[Delivery] = []

    async def start(
        outbox: Outbox, endpoint: str | None = None, config: Config | None = None
    ) -> Delivery:
        d = Delivery(outbox, endpoint or moto_endpoint, config)
        started.append(d)
        return await d.start()

    yield start
    for d in started:
        await d.stop()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A certificate authority for local TLS servers (trustme)."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA) -> Iterator[str]:
    """`ca`'s certificate as a PEM file, for clients that verify against it."""
    with ca.cert_pem.tempfile() as path:
        yield path


@pytest.fixture
async def prober() -> AsyncIterator[Any]:
    """A probe engine (`daemon.probes.prober.Prober`), closed after the test."""
    from daemon.probes.prober import Prober

    p = Prober()
    yield p
    await p.close()
