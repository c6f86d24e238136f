"""Secret-bearing URLs and an AWS access key id, grepped in every output of a real daemon: its
logs (at library_level = debug), /status, /metrics, the probe alert it publishes to SNS, and
`awsd check-config`. None may show a password, a secret query value or the whole key id."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ConfigFactory
from tests.support.messaging import receive_bodies, subscribe_queue, unique
from tests.support.proc import Awsd, awsd_cli

pytestmark = pytest.mark.slow

PASSWORD = "pw-0b5cure-0f-the-user"
SECRETS = {
    PASSWORD: "a probe URL's password",
    "ak-3f9a8c7d6e5b4a39": "a probe URL's api_key",
    "sess-77d1e2f3a4b5c6d7": "a query value listed in log.redact_query",
    "tok-9d8c7b6a5f4e3d2c": "a webhook's token",
    "AKIAIOSFODNN7EXAMPLE": "the AWS access key id",
}


class Failing(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(500)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"boom")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_no_output_shows_a_url_secret_or_the_access_key_id(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto, failing_server: int, tmp_path: Path
):
    port = failing_server
    sqs = boto("sqs")
    topic = boto("sns").create_topic(Name=unique("alerts"))["TopicArn"]
    alerts = sqs.create_queue(QueueName=unique("alerts"))["QueueUrl"]
    subscribe_queue(boto, topic, alerts, raw=True)
    inbox = sqs.create_queue(QueueName=unique("inbox"))["QueueUrl"]
    sqs.send_message(QueueUrl=inbox, MessageBody="to the webhook")
    probe_url = (
        f"http://watcher:{PASSWORD}@127.0.0.1:{port}/health"
        "?api_key=ak-3f9a8c7d6e5b4a39&session_id=sess-77d1e2f3a4b5c6d7&page=1"
    )
    hook = f"http://127.0.0.1:{port}/hook?token=tok-9d8c7b6a5f4e3d2c"
    path = configs.write(
        {
            "log": {"library_level": "debug", "redact_query": ["session_id"]},
            "probes": {
                "endpoints": {
                    "site": {
                        "url": probe_url,
                        "interval": 0.5,
                        "timeout": 0.4,
                        "alert": {"topic": topic, "failure_threshold": 1},
                    }
                },
                "storm": {"group_window": 0},
            },
            "sqs": {
                "in": {
                    "queue": inbox,
                    "wait_time_seconds": 1,
                    "handler": {"kind": "forward", "url": hook},
                }
            },
        }
    )
    proc = awsd(path, env={"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"})
    try:
        proc.wait_ready()
    except AssertionError:
        raise AssertionError(proc.stderr.text()[-3000:]) from None
    (alert,) = receive_bodies(boto, alerts, 1)
    proc.logs.wait_for(where=lambda e: "answered 500" in json.dumps(e))
    outputs = {
        "the alert published to SNS": alert,
        "/status": json.dumps(proc.http("/status")[1]),
        "/metrics": proc.http("/metrics")[1],
    }
    check = awsd_cli("check-config", "--config", str(path))
    assert check.returncode == 0, check.stderr
    outputs["check-config"] = check.stdout + check.stderr
    assert proc.stop() == 0
    outputs["the logs"] = proc.logs.text() + proc.stderr.text()
    for where, text in outputs.items():
        for secret, what in SECRETS.items():
            assert secret not in text, f"{what} shows in {where}"
    shown = "http://watcher:***@127.0.0.1"
    for where in ("the alert published to SNS", "/status", "check-config"):
        assert shown in outputs[where] and "api_key=***" in outputs[where], where
        assert "session_id=***" in outputs[where] and "page=1" in outputs[where], where
    assert "hook?token=***" in outputs["the logs"]
    assert '"logger":"botocore' in outputs["the logs"]  # library debug lines were written
