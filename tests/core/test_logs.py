"""The log line format people and journald read: JSON with an ISO-8601 UTC timestamp, the
console layout when asked for, and libraries kept at WARNING unless told otherwise."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta

from daemon.config.models import LogConfig
from daemon.core.logs import configure_logging, get_logger


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
    [line] = lines(out)
    assert "probing" in line and "endpoints" in line
    assert not line.startswith("{")


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
