"""The shared handlers, driven with hand-made records."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from daemon.config.handlers import LogHandlerConfig, PythonHandlerConfig
from daemon.config.models import LogConfig
from daemon.core.logs import configure_logging
from daemon.handlers import Record, build_handler
from daemon.handlers.log import LogHandler

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


def kinesis_record(n: int, shard: str, key: str) -> Record:
    body = json.dumps({"sensor": key, "n": n}).encode()
    return Record(
        source="kinesis",
        id=str(n),
        body=body,
        kind="json",
        text=body.decode(),
        data=json.loads(body),
        meta={"shard": shard, "partition_key": key, "sequence": str(n)},
    )


async def test_log_handler_summary_counts_a_full_window_in_one_event(logs):
    cfg = LogHandlerConfig.model_validate({"kind": "log", "summary": {"records": 4}})
    handler = build_handler(cfg, None)
    for n in range(5):
        await handler.handle(kinesis_record(n, f"shard-{n % 2}", f"sensor-{n % 3}"))
    assert not logs.matching("record")
    [summary] = logs.matching("records")
    assert summary["count"] == 4
    assert summary["from"] == {"shard-0": 2, "shard-1": 2}
    assert (summary["first_id"], summary["last_id"]) == ("0", "3")
    assert summary["partition_keys"] == 3
    assert summary["last"] == {"sensor": "sensor-0", "n": 3}
    assert summary["kinds"] is None  # one kind: nothing to break down
    await handler.close()  # the rest of the window is not lost at a stop
    [_, rest] = logs.matching("records")
    assert (rest["count"], rest["first_id"], rest["last_id"]) == (1, "4", "4")


async def test_log_handler_summary_closes_a_window_after_its_seconds(logs):
    now = [100.0]
    cfg = LogHandlerConfig.model_validate({"kind": "log", "summary": {"seconds": 10}})
    handler = LogHandler(cfg, clock=lambda: now[0])
    await handler.handle(kinesis_record(1, "shard-0", "a"))
    now[0] += 4
    await handler.handle(kinesis_record(2, "shard-0", "a"))
    assert not logs.matching("records")
    now[0] += 7  # 11 s after the window's first record
    await handler.handle(kinesis_record(3, "shard-1", "b"))
    [summary] = logs.matching("records")
    assert (summary["count"], summary["seconds"], summary["last_id"]) == (2, 11.0, "2")
    await handler.close()
    assert [s["count"] for s in logs.matching("records")] == [2, 1]


async def test_log_handler_summary_of_a_quiet_stream_comes_from_its_timer(logs):
    cfg = LogHandlerConfig.model_validate({"kind": "log", "summary": {"seconds": 0.01}})
    handler = build_handler(cfg, None)
    await handler.handle(kinesis_record(1, "shard-0", "a"))
    for _ in range(1000):  # the loop's timer, not a further record, logs the summary
        if logs.matching("records"):
            break
        await asyncio.sleep(0.01)
    [summary] = logs.matching("records")
    assert summary["count"] == 1
    await handler.close()  # nothing left: no empty summary
    assert len(logs.matching("records")) == 1
