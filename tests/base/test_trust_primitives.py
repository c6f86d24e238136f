"""The building blocks of the trust rules: one URL redaction, one set of ARN/URL/host types,
private state files whatever the umask, bounded file reads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from daemon.base.fields import Arn, Host, HttpUrl, QueueRef, StateDir, StateFile, TopicRef
from daemon.base.files import (
    NotARegularFile,
    TooLarge,
    open_dir_reason,
    private_file,
    read_bounded,
    sqlite_file,
    write_private,
)
from daemon.base.redact import configure_redaction, redact, redact_text, redact_url
from daemon.core.metrics import Registry


class TestUrlRedaction:
    def test_passwords_and_secret_query_values_are_masked_the_rest_kept(self):
        url = "https://user:s3cr3t@example.com:8443/p/a?x=1&api_key=K1&token=T2&sig=S3&key=K4#frag"
        assert redact_url(url) == (
            "https://user:***@example.com:8443/p/a?x=1&api_key=***&token=***&sig=***&key=***#frag"
        )

    def test_configured_query_names_are_masked_too(self):
        configure_redaction(["Session_ID"])
        try:
            assert (
                redact_url("http://h/p?session_id=abc&page=2") == "http://h/p?session_id=***&page=2"
            )
        finally:
            configure_redaction([])
        assert redact_url("http://h/p?session_id=abc") == "http://h/p?session_id=abc"

    def test_urls_inside_text_are_redacted_where_they_stand(self):
        text = 'webhook https://h.example/hook?token=abc123 answered 500 "Internal"'
        assert (
            redact_text(text) == 'webhook https://h.example/hook?token=*** answered 500 "Internal"'
        )

    def test_a_token_as_the_whole_userinfo_is_masked(self):
        assert redact_url("https://ghp_0123456789abcdefghij@github.com/x") == (
            "https://***@github.com/x"
        )

    def test_malformed_urls_never_raise(self):
        for text in ("http://[::1/x?token=1", "http://", "http://:@/?=&=", "x://%%%?a=%zz"):
            assert "1" not in redact_url(text).partition("token=")[2]

    def test_access_key_ids_keep_their_last_four_characters(self):
        line = (
            "Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/sns/aws4_request and "
            "ASIAXXXXXXXXXXXXWXYZ alone; Credential=testing/20240101"
        )
        out = redact_text(line)
        assert "AKIAIOSFODNN7EXAMPLE" not in out and "***MPLE/" in out
        assert "ASIAXXXXXXXXXXXXWXYZ" not in out and "***WXYZ" in out
        assert "Credential=***/20240101" in out  # too short to show any of it

    def test_nested_values_and_metric_labels_are_redacted(self):
        assert redact({"probe": {"url": "https://u:pw@h/?token=t"}}) == {
            "probe": {"url": "https://u:***@h/?token=***"}
        }
        registry = Registry()
        family = registry.counter("c", "c", ("target",))
        family.labels(target="https://h/hook?token=secret").inc()
        assert [key for key, _ in family.items()] == [("https://h/hook?token=***",)]
        assert family.labels(target="https://h/hook?token=secret").value == 1


class TestFieldTypes:
    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("arn:aws:sns:nowhere", "is not an ARN"),
            ("arn:aws:sqs:us-east-1:12:q", "account must be 12 digits"),
            ("arn:aws:sqs:x", "is not an ARN"),
            ("arn:aws:sns:mars-1:123456789012:t", "is not a region"),
            ("arn:aws:sns:us-east-1:123456789012:bad name", "is not a sns resource"),
            ("arn:nope:sns:us-east-1:123456789012:t", "unknown partition"),
        ],
    )
    def test_malformed_arns_are_refused_with_the_reason(self, value: str, reason: str):
        with pytest.raises(ValueError, match=reason):
            Arn.parse(value)

    def test_references_take_names_arns_of_their_service_and_queue_urls(self):
        topic, queue = TypeAdapter(TopicRef), TypeAdapter(QueueRef)
        assert topic.validate_python("alerts") == "alerts"
        assert topic.validate_python("arn:aws:sns:eu-west-1:123456789012:a.fifo")
        assert queue.validate_python("http://127.0.0.1:5000/123456789012/orders")
        for bad, adapter in [
            ("arn:aws:sqs:eu-west-1:123456789012:q", topic),
            ("http://", queue),
            ("https://sqs.eu-west-1.amazonaws.com/orders", queue),
            ("https://h/123456789012/q", topic),
            ("two words", topic),
        ]:
            with pytest.raises(ValidationError):
                adapter.validate_python(bad)

    @pytest.mark.parametrize(
        "value", ["999.1.1.1", "a b", "", "host/path", "x" * 64 + ".example", "1.2.3"]
    )
    def test_invalid_hosts_are_refused(self, value: str):
        with pytest.raises(ValidationError):
            TypeAdapter(Host).validate_python(value)

    @pytest.mark.parametrize(
        "value", ["http://", "http://a b/x", "http://999.1.1.1/", "ftp://h/", "http://h:0/"]
    )
    def test_invalid_urls_are_refused(self, value: str):
        with pytest.raises(ValidationError):
            TypeAdapter(HttpUrl).validate_python(value)

    def test_state_paths_must_be_of_the_right_kind_and_not_kernel_files(self, tmp_path: Path):
        a_file = tmp_path / "f"
        a_file.write_text("x")
        for bad in (str(a_file), "/proc/self", "/sys/x", str(a_file / "sub")):
            with pytest.raises(ValidationError):
                TypeAdapter(StateDir).validate_python(bad)
        for bad in (str(tmp_path), "/proc/self/x.sqlite3", str(a_file / "o.sqlite3"), "/dev/null"):
            with pytest.raises(ValidationError):
                TypeAdapter(StateFile).validate_python(bad)
        assert TypeAdapter(StateFile).validate_python(":memory:") == ":memory:"


class TestPrivateFiles:
    def test_state_files_are_0600_and_dirs_0700_whatever_the_umask(self, tmp_path: Path):
        old = os.umask(0)
        try:
            db = tmp_path / "state" / "sub" / "x.sqlite3"
            sqlite_file(str(db))
            write_private(tmp_path / "state" / "token", b"t")
        finally:
            os.umask(old)
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "state" / "token").stat().st_mode) == 0o600

    def test_existing_open_files_are_tightened_and_open_dirs_reported(self, tmp_path: Path):
        tmp_path.chmod(0o755)
        for name in ("o.sqlite3", "o.sqlite3-wal"):
            (tmp_path / name).write_text("x")
            (tmp_path / name).chmod(0o644)
        private_file(tmp_path / "o.sqlite3", sidecars=("-wal",))
        assert {
            stat.S_IMODE((tmp_path / n).stat().st_mode) for n in ("o.sqlite3", "o.sqlite3-wal")
        } == {0o600}
        reason = open_dir_reason(tmp_path)
        assert reason and "0755" in reason and "every local user" in reason
        tmp_path.chmod(0o710)
        assert open_dir_reason(tmp_path, group_search=True) is None
        assert open_dir_reason(tmp_path) is not None

    def test_bounded_reads_refuse_fifos_devices_loops_and_big_files(self, tmp_path: Path):
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        with pytest.raises(NotARegularFile):
            read_bounded(fifo, 100)  # opened without blocking: no writer needed
        with pytest.raises(NotARegularFile):
            read_bounded("/dev/zero", 100)
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        with pytest.raises(OSError):
            read_bounded(tmp_path / "a", 100)
        (tmp_path / "big").write_bytes(b"x" * 101)
        with pytest.raises(TooLarge):
            read_bounded(tmp_path / "big", 100)
        assert read_bounded(tmp_path / "big", 101) == b"x" * 101
