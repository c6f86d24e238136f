"""The shared handlers, driven with hand-made records."""

from __future__ import annotations

import io
import json

import pytest

from daemon.config.handlers import LogHandlerConfig, PythonHandlerConfig
from daemon.config.models import LogConfig
from daemon.core.logs import configure_logging
from daemon.handlers import Record, build_handler

SEEN: list[str] = []


def sync_handler(record: Record) -> None:
    SEEN.append(f"sync:{record.id}")


async def async_handler(record: Record) -> None:
    if record.text == "fail":
        raise RuntimeError("refused")
    SEEN.append(f"async:{record.id}")


async def test_python_handlers_sync_and_async():
    SEEN.clear()
    for entry in (
        "tests.handlers.test_handlers:sync_handler",
        "tests.handlers.test_handlers:async_handler",
    ):
        handler = build_handler(PythonHandlerConfig(kind="python", entrypoint=entry), None)
        await handler.handle(Record(source="sqs", id="1", body=b"x", kind="text", text="x"))
        await handler.close()
    assert SEEN == ["sync:1", "async:1"]
    failing = build_handler(
        PythonHandlerConfig(kind="python", entrypoint="tests.handlers.test_handlers:async_handler"),
        None,
    )
    with pytest.raises(RuntimeError, match="refused"):
        await failing.handle(Record(source="sqs", id="2", body=b"fail", kind="text", text="fail"))


async def test_log_handler_cuts_long_bodies_and_describes_bytes():
    out = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=out)
    handler = build_handler(LogHandlerConfig(kind="log", max_chars=5), None)
    await handler.handle(
        Record(
            source="kinesis",
            id="9",
            body=b"abcdefgh",
            kind="text",
            text="abcdefgh",
            meta={"shard": "s-0"},
        )
    )
    await handler.handle(Record(source="sqs", id="10", body=b"\xff\xfe", kind="bytes"))
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["body"] == "abcde...[3 more]" and first["shard"] == "s-0"
    assert second["body"] == "<2 bytes>"
