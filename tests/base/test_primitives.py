"""Stop tokens, the retry helper, the metrics registry, the event bus, redaction, sd_notify."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from daemon.base.redact import MASK, is_secret_name, redact, redact_text
from daemon.base.retry import Backoff, retry
from daemon.base.stop import Stopped, StopToken
from daemon.core.events import Event, EventBus
from daemon.core.metrics import Registry
from daemon.runtime.notify import Notifier


class TestStopToken:
    async def test_sleep_wakes_on_stop(self):
        token = StopToken()
        loop = asyncio.get_running_loop()
        began = loop.time()
        sleeper = asyncio.create_task(token.sleep(30))
        await asyncio.sleep(0.01)
        token.stop()
        assert await sleeper is False
        assert loop.time() - began < 10  # woke long before the 30 s sleep ended

    async def test_sleep_returns_true_when_time_passes(self):
        assert await StopToken().sleep(0.01) is True

    async def test_race_cancels_the_work_when_stop_comes_first(self):
        token = StopToken()
        cancelled = asyncio.Event()

        async def work() -> int:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return 1

        racer = asyncio.create_task(token.race(work()))
        await asyncio.sleep(0.01)
        token.stop()
        with pytest.raises(Stopped):
            await racer
        assert cancelled.is_set()
        assert await StopToken().race(asyncio.sleep(0, result=5)) == 5

    async def test_race_after_stop_leaves_no_coroutine_unawaited(self):
        import gc

        token = StopToken()
        token.stop()
        queue: asyncio.Queue[int] = asyncio.Queue()
        with pytest.raises(Stopped):
            await token.race(asyncio.wait_for(queue.get(), 5))
        gc.collect()  # a never-awaited coroutine would warn here (an error under this suite)

    async def test_deadline_keeps_the_earliest(self):
        token = StopToken()
        now = asyncio.get_running_loop().time()
        token.stop(now + 5)
        token.stop(now + 50)
        assert 4 < token.remaining(99) <= 5


class TestRetry:
    def test_delays_grow_are_capped_and_never_below_half(self):
        backoff = Backoff(initial=1, maximum=8)
        rng = random.Random(7)
        for attempt, ceiling in enumerate([1, 2, 4, 8, 8, 8]):
            for _ in range(50):
                delay = backoff.delay(attempt, rng)
                assert ceiling / 2 <= delay <= ceiling

    async def test_retries_until_success(self):
        calls = []

        async def flaky() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError("down")
            return "ok"

        result = await retry(
            flaky, retry_if=lambda e: isinstance(e, ConnectionError), backoff=Backoff(0.001, 0.002)
        )
        assert result == "ok" and len(calls) == 3

    async def test_gives_up_on_permanent_errors_at_once(self):
        calls = []

        async def broken() -> None:
            calls.append(1)
            raise ValueError("bad input")

        with pytest.raises(ValueError, match="bad input"):
            await retry(broken, retry_if=lambda e: isinstance(e, ConnectionError))
        assert len(calls) == 1

    async def test_gives_up_after_attempts_or_budget(self):
        async def down() -> None:
            raise ConnectionError

        with pytest.raises(ConnectionError):
            await retry(down, retry_if=lambda e: True, backoff=Backoff(0.001, 0.001), attempts=3)
        with pytest.raises(ConnectionError):
            await retry(down, retry_if=lambda e: True, backoff=Backoff(0.05, 0.05), budget=0.1)

    async def test_stop_interrupts_the_wait(self):
        token = StopToken()

        async def down() -> None:
            raise ConnectionError

        task = asyncio.create_task(
            retry(down, retry_if=lambda e: True, backoff=Backoff(30, 30), stop=token)
        )
        await asyncio.sleep(0.01)
        token.stop()
        with pytest.raises(Stopped):
            await task


class TestMetrics:
    def test_same_name_returns_the_same_family_and_series(self):
        reg = Registry()
        family = reg.counter("x_total", "x", ("queue",))
        assert reg.counter("x_total", "x", ("queue",)) is family
        child = family.labels(queue="a")
        child.inc()
        child.inc(2)
        assert family.labels(queue="a") is child and child.value == 3
        with pytest.raises(ValueError, match="already registered"):
            reg.gauge("x_total", "x")
        with pytest.raises(ValueError, match="takes labels"):
            family.labels(stream="s")

    def test_histogram_keeps_buckets_and_a_drainable_window(self):
        hist = Registry().histogram("lat", "latency", buckets=(0.1, 1.0)).labels()
        for value in (0.05, 0.5, 5.0):
            hist.observe(value)
        assert hist.buckets == [1, 1, 1] and hist.count == 3
        window = hist.drain_window()
        assert window is not None
        assert (window.count, window.minimum, window.maximum) == (3, 0.05, 5.0)
        assert hist.drain_window() is None
        assert hist.count == 3  # cumulative part untouched

    def test_series_can_be_removed(self):
        family = Registry().gauge("g", "g", ("shard",))
        family.labels(shard="1").set(4)
        family.remove(shard="1")
        assert list(family.series()) == []


class TestEventBus:
    async def test_full_subscriber_drops_are_counted_not_blocking(self):
        metrics = Registry()
        bus = EventBus(metrics)
        sub = bus.subscribe(Event, maxsize=2, name="slow")
        assert [bus.publish(Event(source="t")) for _ in range(4)] == [1, 1, 0, 0]
        assert sub.dropped == 2
        dropped = metrics.counter("awsd_events_dropped_total", "", ("subscriber",))
        assert dropped.labels(subscriber="slow").value == 2
        assert (await sub.get()).source == "t"
        sub.close()
        assert bus.publish(Event()) == 0


class TestRedaction:
    @pytest.mark.parametrize(
        "name",
        [
            "password",
            "db_passwd",
            "passphrase",
            "aws_secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
            "SecretAccessKey",
            "api_key",
            "apiKey",
            "APIKey",
            "x-api-key",
            "access_key",
            "client_key",  # a TLS client key file
            "signing_key",
            "private_key_pem",
            "privateKeyPem",
            "ssh_keyfile",
            "ssh_key_path",
            "key_file",
            "keypair",
            "token",
            "SessionToken",
            "refresh_token_value",
            "Authorization",
            "auth",
            "basic_auth",
            "Cookie",
            "X-Amz-Signature",
            "client_secret",
            "credentials",
            "credentials_file",
            "my_private_thing",  # unknown names saying secret things are masked
            "some_tokenish_field",
            "kms_key",  # unknown kinds of key: masked, to be safe
            "api_keys",
        ],
    )
    def test_secret_names(self, name: str):
        assert is_secret_name(name)

    @pytest.mark.parametrize(
        "name",
        [
            "key",  # an S3 object key, a dedup or sort key
            "keys",
            "Key",
            "partition_key",
            "PartitionKey",
            "ExplicitHashKey",
            "partition_key_type",
            "partition_key_field",
            "sort_key",
            "lease_key",
            "dedup_key",
            "object_key",
            "S3Key",
            "bucket_key",  # an S3 encryption setting (a bool)
            "BucketKeyEnabled",
            "kms_key_id",
            "KmsMasterKeyId",
            "key_prefix",
            "SignatureVersion",
            "keyword",
            "region",
            "unauthorized",
        ],
    )
    def test_data_names_are_not_secrets(self, name: str):
        assert not is_secret_name(name)

    def test_awsd_config_shows_its_harmless_fields(self):
        """What `awsd check-config` prints: settings whose names mention keys, signatures or
        credentials but hold no secret stay readable."""
        shown = {
            "bucket_key": True,
            "kms_key_id": "alias/aws/kinesis",
            "partition_key": "sensor",
            "key": "raw/2024/01/01/file.json",
            "pass_aws_credentials": True,  # a boolean never leaks anything
            "attributes": {"SignatureVersion": "2", "KmsMasterKeyId": "alias/aws/sns"},
        }
        assert redact(shown) == shown
        hidden = {"private_key_pem": "-----BEGIN", "ssh_keyfile": "/root/.ssh/id", "pin": 1}
        assert redact({**hidden, "password": 123456}) == {
            "private_key_pem": MASK,
            "ssh_keyfile": MASK,
            "pin": 1,
            "password": MASK,  # a number under a secret name is masked too
        }

    def test_values_that_look_like_credentials_are_masked(self):
        text = (
            "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY "
            "https://u:pw1234@h.example/p Authorization: Bearer xyz.abc "
            "aws_session_token=FwoGZXIvYXdzEabcdefghijklmnopqrstu "
            "https://b.s3.amazonaws.com/k?X-Amz-Expires=60&X-Amz-Signature=0f1e2d3c4b5a69788796a5b4"
        )
        out = redact_text(text)
        for secret in (
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI",
            "pw1234",
            "xyz.abc",
            "FwoGZXIvYXdzEabc",
            "0f1e2d3c4b5a69788796a5b4",
        ):
            assert secret not in out
        assert "https://u:***@h.example/p" in out

    def test_ordinary_text_is_untouched(self):
        text = "queue orders-prod received 10 messages in 0.25s from shardId-000000000001"
        assert redact_text(text) == text
        sha = "0123456789abcdef0123456789abcdef01234567"  # a lowercase hex digest is not a key
        assert redact_text(sha) == sha

    def test_nested_structures(self):
        out = redact({"a": [{"password": "x1"}], "b": {"token": ""}, "c": "plain"})
        assert out == {"a": [{"password": MASK}], "b": {"token": ""}, "c": "plain"}


def test_notifier_is_a_no_op_without_a_socket():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.ready("x") is False
    assert notifier.watchdog_interval() is None


def test_notifier_watchdog_interval_is_half_and_respects_watchdog_pid():
    assert Notifier({"WATCHDOG_USEC": "10000000"}).watchdog_interval() == 5.0
    assert Notifier({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None


def test_notifier_survives_a_vanished_socket(tmp_path):
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.ready("ok")
    assert sock.recv(1000).startswith(b"READY=1\nSTATUS=ok")
    sock.close()
    path.unlink()
    assert notifier.status("gone") is False
    notifier.close()


def test_journal_stream_lines_carry_their_syslog_priority(tmp_path, monkeypatch):
    import os

    from daemon.config.models import LogConfig
    from daemon.core.logs import configure_logging, get_logger

    path = tmp_path / "journal"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        configure_logging(LogConfig(format="json"), stream=stream)
        get_logger().error("disk on fire", path="/x")
        get_logger().info("all fine")
        monkeypatch.delenv("JOURNAL_STREAM")
        configure_logging(LogConfig(format="json"), stream=stream)
        get_logger().info("not the journal any more")
    error, info, plain = path.read_text().splitlines()
    assert error.startswith('<3>{"timestamp"') and '"event":"disk on fire"' in error
    assert info.startswith("<6>{")
    assert plain.startswith("{")


def test_clock_skew_is_retry_later():
    from botocore.exceptions import ClientError

    from daemon.base.awserrors import is_clock_skew, is_retryable

    skewed = ClientError(
        {
            "Error": {
                "Code": "InvalidSignatureException",
                "Message": "Signature expired: 20261127T000000Z is now earlier"
                " than 20261127T031500Z",
            }
        },
        "Publish",
    )
    assert is_clock_skew(skewed) and is_retryable(skewed)
    too_skewed = ClientError({"Error": {"Code": "RequestTimeTooSkewed", "Message": ""}}, "Put")
    assert is_retryable(too_skewed)
