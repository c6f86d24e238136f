"""Malformed and hostile config files: every one is refused with the file, the field and the
reason (exit 78), never a traceback, a hang or an unbounded read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from daemon.config import ConfigError, load_config
from tests.support.proc import awsd_cli

ARN = "arn:aws:sns:us-east-1:123456789012:t"


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as failure:
        load_config(path)
    text = failure.value.render()
    assert "Traceback" not in text
    return text


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"sns": {"topic": "arn:aws:sns:nowhere"}}, "sns.topic", "is not an ARN"),
        (
            {"sqs": {"q": {"queue": "arn:aws:sqs:us-east-1:12:q"}}},
            "sqs.q.queue",
            "account must be 12 digits",
        ),
        ({"sqs": {"q": {"queue": "http://"}}}, "sqs.q.queue", "has no host"),
        (
            {"sqs": {"q": {"queue": "https://sqs.amazonaws.com/q"}}},
            "sqs.q.queue",
            "is not a queue URL",
        ),
        (
            {
                "resources": {
                    "topics": {
                        "t": {"subscriptions": [{"protocol": "sqs", "endpoint": "arn:aws:sqs:x"}]}
                    }
                }
            },
            "resources.topics.t.subscriptions[0]",
            "is not an ARN",
        ),
        (
            {"probes": {"endpoints": {"p": {"url": "http://exa mple.com/"}}}},
            "probes.endpoints.p.url",
            "white space",
        ),
        ({"health": {"host": "999.1.1.1"}}, "health.host", "not a valid IPv4 address"),
        ({"aws": {"endpoint_url": "http://bad host:4566"}}, "aws.endpoint_url", "white space"),
        ({"runtime": {"state_dir": "/proc/1"}}, "runtime.state_dir", "kernel file system"),
        ({"outbox": {"path": "/proc/self/outbox"}}, "outbox.path", "kernel file system"),
        ({"ingest": {"allow": ["+1 555"]}}, "ingest.allow[0]", "E.164"),
        ({"ingest": {"allow": ["arn:aws:sqs:us-east-1:123456789012:q"]}}, "ingest.allow[0]", "sns"),
    ],
)
def test_malformed_values_name_the_file_the_field_and_the_reason(
    offline_configs: Any, overrides: dict[str, Any], field: str, reason: str
):
    path = offline_configs.write(overrides, health=False)
    text = refused(path)
    assert f"{path}: {field}" in text and reason in text, text


def test_state_paths_of_the_wrong_kind_are_refused(offline_configs: Any, tmp_path: Path):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    for overrides, field, reason in [
        ({"runtime": {"state_dir": str(a_file)}}, "runtime.state_dir", "is not a directory"),
        ({"outbox": {"path": str(tmp_path)}}, "outbox.path", "is a directory"),
        ({"outbox": {"path": str(a_file / "o.sqlite3")}}, "outbox.path", "is not a directory"),
    ]:
        text = refused(offline_configs.write(overrides, health=False))
        assert field in text and reason in text, text


def test_config_files_that_are_not_regular_files_or_too_big_are_refused(tmp_path: Path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert "symbolic link loop" in refused(tmp_path / "a")
    os.mkfifo(tmp_path / "fifo")
    assert "is a FIFO, not a regular file" in refused(tmp_path / "fifo")
    assert "is a device" in refused(Path("/dev/zero"))
    assert "is a directory" in refused(tmp_path)
    (tmp_path / "zero.toml").write_text('env = "x"\nextends = "/dev/zero"\n')
    assert "/dev/zero: is a device" in refused(tmp_path / "zero.toml")
    (tmp_path / "loop.toml").write_text('env = "x"\nextends = "a"\n')
    assert "symbolic link loop" in refused(tmp_path / "loop.toml")
    big = tmp_path / "big.toml"
    big.write_text('env = "x"\n' + "# padding\n" * 110_000)
    assert "larger than 1048576 bytes" in refused(big)


@pytest.mark.slow
def test_the_commands_exit_78_on_hostile_configs_without_a_traceback(tmp_path: Path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    bad_host = tmp_path / "host.toml"
    bad_host.write_text(tomli_w.dumps({"env": "x", "health": {"host": "999.1.1.1"}}))
    for args in (
        ("check-config", "--config", str(tmp_path / "fifo")),
        ("check-config", "--config", str(tmp_path / "loop")),
        ("run", "--config", str(bad_host)),
    ):
        done = awsd_cli(*args, timeout=30)
        assert done.returncode == 78, (args, done.stderr)
        assert "Traceback" not in done.stderr and "configuration invalid" in done.stderr, args
