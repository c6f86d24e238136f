"""The local ingest endpoint against a real daemon and hostile local clients: another user,
web pages (CSRF, DNS rebinding), undeclared destinations, floods, garbage and stalled
connections. One daemon serves the module (started with umask 000 on an open state directory,
which it must not make any more open)."""

from __future__ import annotations

import json
import os
import resource
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ConfigFactory
from tests.support.messaging import unique
from tests.support.proc import REPO, Awsd, base_env, prometheus

pytestmark = pytest.mark.slow

NOBODY = 65534
ALLOWED_PHONE = "+15555550100"


@pytest.fixture(scope="module")
def topics(moto_endpoint: str) -> dict[str, str]:
    import boto3

    sns = boto3.client("sns", endpoint_url=moto_endpoint, region_name="us-east-1")
    return {key: sns.create_topic(Name=unique(key))["TopicArn"] for key in ("default", "allowed")}


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, topics: dict[str, str]
) -> Iterator[Awsd]:
    tmp = tmp_path_factory.mktemp("ingest")
    state = tmp / "state"
    state.mkdir()
    state.chmod(0o755)  # an open state directory left by someone else
    (state / "outbox.sqlite3").touch(mode=0o644)
    path = ConfigFactory(tmp, moto_endpoint).write(
        {
            "health": {"max_connections": 16, "idle_timeout": 1.0, "body_timeout": 1.0},
            "outbox": {"retry_initial": 0.2, "retry_max": 1.0},
            "sns": {"topic": topics["default"]},
            "ingest": {
                "allow": [topics["allowed"], ALLOWED_PHONE],
                "origins": ["http://localhost:3000"],
                "burst": 50,
            },
            "resources": {"mode": "off", "topics": {"declared": {}}},
        }
    )
    proc = Awsd(path, umask=0)
    proc.health_port = _port(path)
    proc.start()
    proc.wait_ready()
    yield proc
    proc.close()


def _port(path: Path) -> int:
    import tomllib

    return int(tomllib.loads(path.read_text())["health"]["port"])


def post(proc: Awsd, body: bytes, **headers: str) -> tuple[int, Any]:
    sent = {"Content-Type": "application/json", "Authorization": f"Bearer {proc.token()}"}
    sent.update(headers)
    return proc.http("/publish", method="POST", body=body, headers=sent)


def raw(port: int, request: bytes, *, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_state_files_are_private_whatever_the_umask_and_an_open_dir_is_warned(daemon: Awsd):
    state = daemon.state_dir()
    files = [p for p in state.iterdir() if p.is_file()]
    assert {"ingest.token", "outbox.sqlite3"} <= {p.name for p in files}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
    warning = daemon.logs.wait_for("state directory is open to other local users")
    assert "0755" in warning["reason"]
    status, body = daemon.http("/status")
    assert status == 200 and "0755" in body["state_dir"]["open_to_others"]


def test_writes_need_the_token_while_read_only_routes_stay_open(daemon: Awsd):
    for path in ("/healthz", "/readyz", "/status", "/metrics"):
        assert daemon.http(path)[0] == 200, path
    status, body = post(daemon, b'{"message": "m"}', Authorization="")
    assert status == 401 and "no token" in body["error"]
    status, body = post(daemon, b'{"message": "m"}', Authorization="Bearer " + "x" * 43)
    assert status == 401 and "a wrong token" in body["error"]
    assert daemon.http("/publish/1")[0] == 401
    status, body = post(daemon, b'{"message": "m"}')
    assert status == 200 and body["status"] == "accepted"


def nobody_python() -> tuple[str, dict[str, str]]:
    """A Python that user nobody may run, and an environment that finds awsd's packages (this
    one's may live under /root, which nobody cannot enter)."""
    import sysconfig

    for candidate in (
        sys.executable,
        f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}",
    ):
        if os.access(candidate, os.X_OK) and _runs_as_nobody(candidate):
            path = f"{REPO}:{sysconfig.get_paths()['purelib']}"
            return candidate, base_env(PYTHONPATH=path)
    pytest.skip("no Python that user nobody can run")


def _runs_as_nobody(python: str) -> bool:
    try:
        done = subprocess.run(
            [python, "-c", "pass"], check=False, user=NOBODY, capture_output=True, timeout=30
        )
    except OSError:
        return False
    return done.returncode == 0


def test_another_local_user_can_neither_publish_nor_read_the_token(daemon: Awsd):
    python, env = nobody_python()
    request = (
        "import urllib.request, urllib.error\n"
        f"r = urllib.request.Request('http://127.0.0.1:{daemon.health_port}/publish', "
        "data=b'{\"message\": \"from nobody\"}', method='POST', "
        "headers={'Content-Type': 'application/json'})\n"
        "try:\n    urllib.request.urlopen(r, timeout=5)\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)\n"
    )
    done = subprocess.run(
        [python, "-c", request],
        check=False,
        user=NOBODY,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "401", done.stderr
    # `awsd publish` as nobody, with a config it can read: the token stays out of its reach.
    shared = Path(tempfile.mkdtemp(prefix="awsd-shared-"))
    try:
        shared.chmod(0o755)
        config = shared / "awsd.toml"
        config.write_text(daemon.config.read_text())
        config.chmod(0o644)
        done = subprocess.run(
            [python, "-m", "daemon", "publish", "--config", str(config), "hello"],
            check=False,
            user=NOBODY,
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for p in shared.iterdir():
            p.unlink()
        shared.rmdir()
    assert done.returncode == 77, done.stderr
    assert "cannot read the ingest token" in done.stderr and "permission denied" in done.stderr


def test_browser_shaped_requests_are_refused(daemon: Awsd):
    port = daemon.health_port
    good = b'{"message": "m"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, body = post(daemon, good, **{"Content-Type": content_type})
        assert status == 415 and "application/json" in body["error"], content_type
    status, body = post(daemon, good, Origin="http://evil.example")
    assert status == 403 and "ingest.origins" in body["error"]
    status, body = post(daemon, good, Origin="http://evil.example", Authorization="")
    assert status == 403  # refused before the token is even looked at
    assert post(daemon, good, Origin="http://localhost:3000")[0] == 200
    status, body = post(daemon, good, Host=f"evil.example:{port}")
    assert status == 403 and "DNS rebinding" in body["error"]
    assert post(daemon, good, Host=f"127.0.0.1:{port + 1}")[0] == 403
    assert post(daemon, good, Host=f"localhost:{port}")[0] == 200


def test_destinations_are_limited_to_declared_and_allowed_ones(daemon: Awsd, topics):
    def send(**fields: str) -> tuple[int, Any]:
        return post(daemon, json.dumps({"message": "m", **fields}).encode())

    status, body = send(phone="+15555550199")
    assert status == 403 and "ingest.allow" in body["error"]
    status, body = send(topic="arn:aws:sns:us-east-1:999999999999:elsewhere")
    assert status == 403 and "ingest.allow" in body["error"] and "declared topics" in body["error"]
    status, body = send(stream="arn:aws:kinesis:us-east-1:123456789012:stream/s")
    assert status == 403 and "stream" in body["error"]
    for fields in ({"phone": ALLOWED_PHONE}, {"topic": topics["allowed"]}, {"topic": "declared"}):
        assert send(**fields)[0] == 200, fields
    batch = {"messages": [{"message": "ok"}, {"message": "no", "phone": "+15555550199"}]}
    status, body = post(daemon, json.dumps(batch).encode())
    assert status == 403 and body["error"].startswith("message 1: ")


def test_a_request_over_the_burst_is_refused_with_429(daemon: Awsd):
    batch = {"messages": [{"message": str(i)} for i in range(51)]}
    status, body = post(daemon, json.dumps(batch).encode())
    assert status == 429 and "ingest.burst" in body["error"]


def test_client_errors_are_answered_400_and_summarised_without_tracebacks(daemon: Awsd):
    port = daemon.health_port
    assert post(daemon, b"[" * 100_000 + b"]" * 100_000)[1] == {
        "error": "the request body is nested too deeply"
    }
    assert daemon.http("/publish/99999999999999999999999", headers=auth(daemon))[0] == 400
    assert daemon.http("/publish/abc", headers=auth(daemon))[0] == 400
    status, body = daemon.http("/publish/-1", headers=auth(daemon))
    assert status == 200 and body == {"id": -1, "status": "unknown"}
    head = (
        f"POST /publish HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer "
        f"{daemon.token()}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    for _ in range(100):
        raw(port, head + b'{"message": "cut', read=False)  # aborted mid-body
    for _ in range(20):
        raw(port, b"\x16\x03\x01\x02\x00 garbage\r\n\r\n")
    before = sum_errors(daemon)
    assert daemon.http("/healthz")[0] == 200
    assert sum_errors(daemon) >= before
    text = daemon.logs.text() + daemon.stderr.text()
    assert "Traceback" not in text and '"level":"error"' not in text
    lines = daemon.logs.matching("client error on the health listener")
    assert len(lines) < 10  # one per kind and minute, not one per request


def test_stalled_connections_starve_neither_health_nor_delivery(daemon: Awsd, topics, boto):
    resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (256, 256))
    sqs = boto("sqs")
    url = sqs.create_queue(QueueName=unique("stalled"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    boto("sns").subscribe(
        TopicArn=topics["allowed"],
        Protocol="sqs",
        Endpoint=arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    stalled = [socket.create_connection(("127.0.0.1", daemon.health_port)) for _ in range(300)]
    try:
        assert daemon.http("/healthz")[0] == 200
        status, body = post(
            daemon, json.dumps({"message": "through", "topic": topics["allowed"]}).encode()
        )
        assert status == 200
        item = body["ids"][0]
        deadline = time.monotonic() + 20
        while daemon.http(f"/publish/{item}", headers=auth(daemon))[1]["status"] != "delivered":
            assert time.monotonic() < deadline, "not delivered with 300 stalled connections"
            time.sleep(0.2)
        received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
        assert [m["Body"] for m in received] == ["through"]
        time.sleep(2.5)  # health.idle_timeout = 1 s
        assert sum(1 for sock in stalled if is_open(sock)) == 0
    finally:
        for sock in stalled:
            sock.close()
    families = prometheus(daemon)
    dropped = families["awsd_http_connections_dropped"].samples
    assert sum(s.value for s in dropped) > 0


def auth(proc: Awsd) -> dict[str, str]:
    return {"Authorization": f"Bearer {proc.token()}"}


def sum_errors(proc: Awsd) -> float:
    family = prometheus(proc).get("awsd_http_client_errors")
    return sum(s.value for s in family.samples) if family else 0.0


def is_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
