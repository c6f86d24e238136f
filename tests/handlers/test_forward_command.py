"""The `forward` and `command` handlers with real parts: the outbox and moto, a local aiohttp
webhook, real child processes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from daemon.config.handlers import CommandHandlerConfig, ForwardHandlerConfig
from daemon.config.models import Config
from daemon.core.events import EventBus
from daemon.core.metrics import Registry
from daemon.core.programs import program_env
from daemon.core.targets import Targets
from daemon.handlers import HandlerError, Record, build_handler
from daemon.outbox import Outbox
from tests.support.messaging import Harness, unique
from tests.support.observe import wait_until


def record(body: bytes = b'{"t": 1}', **meta: Any) -> Record:
    text = None
    with contextlib.suppress(UnicodeDecodeError):
        text = body.decode()
    data = json.loads(text) if text and text.startswith("{") else None
    kind = "bytes" if text is None else ("json" if data is not None else "text")
    return Record(
        source="sqs",
        id="rec-1",
        body=body,
        kind=kind,
        text=text,
        data=data,
        attributes={"a": "b"},
        meta=meta,
    )


class Services:
    """Just what the forward handler uses: an outbox, and names that need no AWS call."""

    def __init__(self) -> None:
        metrics = Registry()
        self.config = Config(env="test")
        self.outbox = Outbox(
            self.config.outbox, ":memory:", metrics=metrics, events=EventBus(metrics)
        )
        self.targets = Targets(self.config, None)  # type: ignore[arg-type]


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    s = Services()
    yield s
    await s.outbox.close()


def forward(**settings: Any) -> ForwardHandlerConfig:
    return ForwardHandlerConfig(kind="forward", **settings)


# --- forward through the outbox -------------------------------------------------------------------


async def test_forward_returns_only_once_the_outbox_committed(services: Services):
    handler = build_handler(forward(sqs="q", attributes={"via": "awsd"}), services, name="sqs:in")
    await handler.handle(record())
    assert services.outbox.count == 1
    (item,) = await services.outbox.take(("sqs", "q"), 10, 1 << 20)
    assert item.origin == "sqs:in"
    assert item.body["body"] == '{"t": 1}' and item.body["attributes"] == {"a": "b", "via": "awsd"}


async def test_forward_encodes_bytes_and_keeps_fifo_groups_and_sns_ids(services: Services):
    handler = build_handler(forward(sns="out.fifo", subject="S", keep_attributes=False), services)
    await handler.handle(record(b"\xff\x00", group_id="g7", message_id="sns-9"))
    (item,) = await services.outbox.take(("sns", "out.fifo"), 10, 1 << 20)
    assert base64.b64decode(item.body["message"]) == b"\xff\x00"
    assert item.body["attributes"] == {"content-transfer-encoding": "base64"}
    assert (item.body["group_id"], item.body["dedup_id"], item.body["subject"]) == (
        "g7",
        "sns-9",
        "S",
    )


async def test_forward_failures_name_the_destination_and_the_reason(services: Services):
    too_many = {f"x{i}": "v" for i in range(10)}
    handler = build_handler(forward(sqs="q", attributes=too_many), services)
    with pytest.raises(HandlerError, match=r"cannot forward to sqs q: .*at most 10"):
        await handler.handle(record())
    assert services.outbox.count == 0


async def test_forward_to_kinesis_puts_a_record_with_its_partition_key(services: Services):
    handler = build_handler(forward(kinesis="clicks"), services, name="sqs:in")
    await handler.handle(record(partition_key="p1"))
    await handler.handle(record(b"\xff"))
    first, second = await services.outbox.take(("kinesis", "clicks"), 10, 1 << 20)
    assert first.body == {"data": base64.b64encode(b'{"t": 1}').decode(), "partition_key": "p1"}
    assert base64.b64decode(second.body["data"]) == b"\xff"
    assert second.body["partition_key"] == "rec-1"  # no group or key: the record id


async def test_forward_to_kinesis_chooses_keys_as_readings_do(services: Services):
    by_field = {"source": "field", "field": "device.id"}
    handler = build_handler(forward(kinesis="k", partition_key=by_field), services)
    await handler.handle(record(b'{"device": {"id": "pi-7"}, "t": 1}', partition_key="p1"))
    await handler.handle(record(b'{"t": 2}', partition_key="p1"))  # no field: a random key
    fixed = build_handler(
        forward(kinesis="k", partition_key={"source": "fixed", "value": "all"}), services
    )
    await fixed.handle(record(group_id="g1"))
    keys = [
        i.body["partition_key"] for i in await services.outbox.take(("kinesis", "k"), 10, 1 << 20)
    ]
    assert keys[0] == "pi-7" and keys[2] == "all"
    assert len(keys[1]) == 32 and keys[1] not in ("p1", "rec-1")
    with pytest.raises(ValueError, match="`partition_key` goes with `kinesis`"):
        forward(sqs="q", partition_key={"source": "random"})


def test_a_plain_string_partition_key_is_a_fixed_key():
    cfg = forward(kinesis="k", partition_key="all")
    assert (cfg.partition_key.source, cfg.partition_key.value) == ("fixed", "all")
    with pytest.raises(ValueError, match="at least 1 character"):
        forward(kinesis="k", partition_key="")


async def test_forward_to_kinesis_end_to_end(harness: Harness, boto):
    kinesis = boto("kinesis")
    stream = unique("clicks")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    handler_cfg = {"kind": "forward", "kinesis": arn}
    config = harness.config(sqs={"x": {"queue": unique("none"), "handler": handler_cfg}})
    services = await harness.start(config)
    handler = build_handler(config.sqs["x"].handler, services)
    await handler.handle(record(b"to the stream", partition_key="k"))
    await wait_until(lambda: services.outbox.count == 0)
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    (got,) = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert got["Data"] == b"to the stream" and got["PartitionKey"] == "k"


def test_forward_needs_exactly_one_destination():
    with pytest.raises(ValueError, match="exactly one destination"):
        forward()
    with pytest.raises(ValueError, match=r"got sns, sqs"):
        forward(sns="t", sqs="q")


async def test_forward_to_sqs_end_to_end(harness: Harness, boto):
    name = unique("fwd")
    url = boto("sqs").create_queue(QueueName=name)["QueueUrl"]
    config = harness.config(
        sqs={"x": {"queue": unique("none"), "handler": {"kind": "forward", "sqs": name}}}
    )
    services = await harness.start(config)
    handler = build_handler(config.sqs["x"].handler, services)
    await handler.handle(record(b"hello"))
    await wait_until(lambda: services.outbox.count == 0)
    got = boto("sqs").receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert got[0]["Body"] == "hello" and got[0]["MessageAttributes"]["a"]["StringValue"] == "b"


# --- forward to a webhook -------------------------------------------------------------------------


class Webhook:
    """A local webhook answering with the statuses queued in `answers` (then 200)."""

    def __init__(self) -> None:
        self.url = ""
        self.answers: list[int] = []
        self.requests: list[dict[str, Any]] = []

    async def hook(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    app = web.Application()
    app.router.add_route("*", "/hook", hook.hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hook.url = f"http://127.0.0.1:{port}/hook"
    yield hook
    await runner.cleanup()


async def test_webhook_retries_5xx_and_429_then_succeeds(webhook: Webhook):
    webhook.answers += [503, 429]
    handler = build_handler(
        forward(url=webhook.url, retry_initial=0.01, headers={"Authorization": "Bearer t"}), None
    )
    try:
        await handler.handle(record())
    finally:
        await handler.close()
    assert len(webhook.requests) == 3
    last = webhook.requests[-1]
    assert last["headers"]["Content-Type"] == "application/json" and last["body"] == b'{"t": 1}'
    assert last["headers"]["X-Awsd-Record-Id"] == "rec-1"
    assert last["headers"]["Authorization"] == "Bearer t"


async def test_webhook_4xx_fails_at_once_and_record_payload_describes_the_record(
    webhook: Webhook,
):
    webhook.answers.append(404)
    handler = build_handler(forward(url=webhook.url, payload="record", method="PUT"), None)
    try:
        with pytest.raises(HandlerError, match="answered 404"):
            await handler.handle(record(b"\xff"))
        assert len(webhook.requests) == 1 and webhook.requests[0]["method"] == "PUT"
        await handler.handle(record(b"\xff"))
    finally:
        await handler.close()
    document = json.loads(webhook.requests[1]["body"])
    assert document["encoding"] == "base64" and document["body"] == "/w=="
    assert document["attributes"] == {"a": "b"} and document["kind"] == "bytes"


async def test_webhook_unreachable_fails_after_its_retries():
    handler = build_handler(
        forward(url="http://127.0.0.1:9/hook", retries=2, retry_initial=0.01, timeout=1), None
    )
    try:
        with pytest.raises(HandlerError, match=r"webhook .* failed: .*\(3 attempts\)"):
            await handler.handle(record())
    finally:
        await handler.close()


# --- command --------------------------------------------------------------------------------------


def command(*argv: str, **settings: Any) -> CommandHandlerConfig:
    return CommandHandlerConfig(kind="command", command=list(argv), **settings)


PY = sys.executable


@pytest.mark.slow
async def test_command_gets_the_record_on_stdin_and_an_environment_without_aws_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    out = tmp_path / "out.json"
    script = (
        "import json, os, sys; json.dump({'stdin': sys.stdin.read(), 'env': dict(os.environ)}, "
        f"open({str(out)!r}, 'w'))"
    )
    handler = build_handler(command(PY, "-c", script, env={"EXTRA": "1"}), None)
    await handler.handle(record(b"reading 42"))
    seen = json.loads(out.read_text())
    assert seen["stdin"] == "reading 42"
    assert "AWS_SECRET_ACCESS_KEY" not in seen["env"] and seen["env"]["EXTRA"] == "1"
    assert seen["env"]["AWSD_RECORD_ID"] == "rec-1" and seen["env"]["AWSD_RECORD_KIND"] == "text"
    kept = program_env(pass_aws_credentials=True)
    assert kept["AWS_SECRET_ACCESS_KEY"].startswith("wJal")


@pytest.mark.slow
async def test_command_exit_code_decides_and_errors_carry_stderr(tmp_path: Path):
    failing = build_handler(
        command(PY, "-c", "import sys; print('disk full', file=sys.stderr); sys.exit(3)"), None
    )
    with pytest.raises(HandlerError, match="exited with 3: disk full"):
        await failing.handle(record())
    missing = build_handler(command(str(tmp_path / "nope")), None)
    with pytest.raises(HandlerError, match="cannot run"):
        await missing.handle(record())
    shell = build_handler(
        command(f"cat > {tmp_path / 'x'} && test -s {tmp_path / 'x'}", shell=True), None
    )
    await shell.handle(record(b"via the shell"))
    assert (tmp_path / "x").read_text() == "via the shell"
    document = tmp_path / "doc.json"
    as_record = build_handler(
        command(
            PY,
            "-c",
            f"import sys; open({str(document)!r}, 'w').write(sys.stdin.read())",
            stdin="record",
        ),
        None,
    )
    await as_record.handle(record())
    assert json.loads(document.read_text())["data"] == {"t": 1}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie waiting for its reaper is dead already


async def _grandchild_pid(pidfile: Path) -> int:
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "", timeout=10)
    return int(pidfile.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_command_timeout_and_cancellation_kill_the_whole_process_group(
    tmp_path: Path, how: str
):
    pidfile = tmp_path / "grandchild"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    handler = build_handler(
        command("sh", "-c", script, timeout=1.0 if how == "timeout" else 60), None
    )
    task = asyncio.create_task(handler.handle(record()))
    grandchild = await _grandchild_pid(pidfile)
    assert _alive(grandchild)
    if how == "timeout":
        with pytest.raises(HandlerError, match="timed out"):
            await task
    else:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await wait_until(lambda: not _alive(grandchild), timeout=10)


def test_command_with_shell_takes_one_string():
    with pytest.raises(ValueError, match="one string"):
        command("a", "b", shell=True)
