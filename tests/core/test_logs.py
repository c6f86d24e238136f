"""The log line format people and journald read: JSON with an ISO-8601 UTC timestamp, the
console layout when asked for, and libraries kept at WARNING unless told otherwise."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest

from daemon.config.models import LogConfig
from daemon.core import logs
from daemon.core.console import ConsoleRenderer
from daemon.core.logs import configure_logging, get_logger, set_context


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_an_iso_utc_timestamp_level_and_event():
    out = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=out)
    get_logger().warning("queue is slow", queue="orders", depth=12)
    [line] = lines(out)
    event = json.loads(line)
    assert event["event"] == "queue is slow" and event["level"] == "warning"
    assert event["queue"] == "orders" and event["depth"] == 12
    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)


def test_console_format_is_for_people_not_json():
    out = io.StringIO()
    configure_logging(LogConfig(format="console"), stream=out)
    get_logger().info("probing", endpoints=2)
    [context, line] = lines(out)
    assert context.startswith("── awsd")
    assert "probing  endpoints=2" in line
    assert not line.startswith("{")


STAMP = "2026-12-03T18:38:59.928810Z"


def render_events(events: list[dict[str, Any]], **options: Any) -> list[str]:
    console = ConsoleRenderer(host="pi4", **options)
    return "\n".join(console(None, e.get("level", "info"), dict(e)) for e in events).splitlines()


def test_console_lines_lead_with_time_level_worker_and_event_and_keep_the_keys_order():
    record = {
        "timestamp": STAMP,
        "level": "info",
        "event": "record",
        "worker": "kinesis:clicks",
        "env": "local",
        "config_version": "1e7c59cb03d5",
        "source": "kinesis",
        "id": "1",
        "attributes": None,
        "shard": "shardId-000000000000",
        "body": {"sensor": "sensor-0", "value": 24.67},
    }
    startup = {"timestamp": STAMP, "level": "warning", "event": "ready", "workers": 8}
    [context, first, second] = render_events([record, startup])
    local = datetime.fromisoformat(STAMP).astimezone()
    offset = f"{local:%z}"
    assert context == (
        f"── awsd · env local · config 1e7c59cb03d5 · host pi4 · {local:%Y-%m-%d}, "
        f"times UTC{offset[:3]}:{offset[3:]} ──"
    )
    assert first == (
        f"{local:%H:%M:%S}.928 info  kinesis:clicks   record  source=kinesis id=1 "
        'shard=shardId-000000000000 body={"sensor":"sensor-0","value":24.67}'
    )
    # No worker: the column stays, blank; the context did not change: no new context line.
    assert second == f"{local:%H:%M:%S}.928 warn  {' ' * 16} ready  workers=8"


def test_console_says_the_context_again_only_when_it_changes():
    base = {"timestamp": STAMP, "event": "tick", "env": "local", "config_version": "aaa"}
    reloaded = {**base, "config_version": "bbb"}
    out = render_events([base, base, reloaded, reloaded])
    contexts = [line for line in out if line.startswith("──")]
    assert len(out) == 6 and len(contexts) == 2
    assert "config aaa" in contexts[0] and "config bbb" in contexts[1]
    assert not any("config_version" in line or "env=" in line for line in out)


def test_console_cuts_long_values_and_quotes_text_with_spaces():
    event = {
        "timestamp": STAMP,
        "event": "alert opened",
        "detail": "connection refused by 127.0.0.1:9",
        "body": "x" * 500,
        "ok": True,
    }
    [_, line] = render_events([event], value_limit=40)
    assert 'detail="connection refused by 127.0.0.1:9"' in line
    assert f"body={'x' * 39}… ok=true" in line
    assert len(line) < 150


def test_console_shows_a_traceback_whole_below_its_line():
    out = io.StringIO()
    configure_logging(LogConfig(format="console"), stream=out)
    try:
        raise ValueError("a long reason " * 20)
    except ValueError as exc:
        get_logger().error("handler failed", exc_info=exc)
    text = lines(out)
    assert "error" in text[1] and "handler failed" in text[1]
    assert text[2].strip() == "Traceback (most recent call last):"
    assert text[-1].strip() == "ValueError: " + ("a long reason " * 20).strip()


def test_json_keeps_every_field_the_console_leaves_out_or_cuts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(logs, "_static", {})  # this test's context only
    out = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=out)
    set_context(env="local", config_version="1e7c59cb03d5")
    get_logger().info("record", body="y" * 500, attributes=None)
    [event] = [json.loads(line) for line in lines(out)]
    assert event["body"] == "y" * 500 and event["attributes"] is None
    assert (event["env"], event["config_version"]) == ("local", "1e7c59cb03d5")


def test_auto_format_writes_json_when_stdout_is_not_a_terminal():
    out = io.StringIO()  # not a TTY, as under systemd
    configure_logging(LogConfig(format="auto"), stream=out)
    get_logger().info("ready")
    assert json.loads(lines(out)[0])["event"] == "ready"


def test_library_logs_pass_at_warning_by_default_and_at_the_configured_level():
    out = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=out)
    botocore = logging.getLogger("botocore.endpoint")
    botocore.info("sending request")  # below the default library level
    botocore.warning("connection pool is full")
    events = [json.loads(line) for line in lines(out)]
    assert [e["event"] for e in events] == ["connection pool is full"]

    out = io.StringIO()
    configure_logging(LogConfig(format="json", level="debug", library_level="info"), stream=out)
    botocore.info("sending request")
    assert [json.loads(line)["event"] for line in lines(out)] == ["sending request"]
