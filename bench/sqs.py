"""SQS consume and SNS publish: the course's loops (lesson 21) against awsd, on one moto server.

Consume: the course's `consumer.py` loop (boto3 resource, `queue.receive_messages()` with its
defaults, `message.delete()` per message) against the awsd poller (a real `awsd run` process with
a no-op python handler, default settings: batch 10, 10 in flight, 20 s long polls), each on its
own standard queue kept short by a producer process running alongside (SendMessageBatch, paused
while the queue holds more than a few hundred messages). Steady state: a warm-up, then a fixed
window; messages/s, the ratio, the daemon's CPU time per message and the moto server's CPU use.

Publish: the course's `pub.py` loop without its 5 s sleep (one Publish per message) against the
awsd publisher: messages POSTed to a running daemon (`POST /publish`, 50 per request), committed
to the durable outbox (fsync: `durability = "full"`) and delivered with PublishBatch; measured
from the first POST to the outbox being empty. Topics have no subscribers, so both measure
publishing only.

Every process runs on the same two cores as the moto server, which is single-threaded in effect
(Python, GIL): the figures say how much work each client makes moto do, as much as how fast the
client is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
WARMUP = 3.0
WINDOW = 15.0
PUBLISH_COUNT = 2000
INGEST_BATCH = 50
TARGET_DEPTH = 30
CLK_TCK = os.sysconf("SC_CLK_TCK")


async def noop(record: Any) -> None:
    """The handler the awsd poller runs: nothing, so the poller itself is measured."""


# --- helpers --------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS", "AWSD"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=str(REPO),
    )
    return env


def _free_port() -> int:
    from daemon.core.local_aws import free_port

    return free_port()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.05)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post_json(url: str, data: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _boto(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class Moto:
    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.core.local_aws", "127.0.0.1", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=_env(),
        )
        _wait_http(f"{self.endpoint}/moto-api/")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class Daemon:
    """A real `awsd run` process on the moto server."""

    def __init__(self, endpoint: str, sections: str, state: Path) -> None:
        self.port = _free_port()
        state.mkdir(parents=True, exist_ok=True)
        config = state / "awsd.toml"
        config.write_text(
            f'env = "bench"\n[aws]\nendpoint_url = "{endpoint}"\nregion = "{REGION}"\n'
            f'[log]\nlevel = "warning"\nformat = "json"\n[health]\nport = {self.port}\n'
            f'[runtime]\nstate_dir = "{state}"\n' + sections
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(config)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        _wait_http(f"{self.base}/readyz")

    def status(self) -> dict[str, Any]:
        return _get_json(f"{self.base}/status")  # type: ignore[no-any-return]

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _start_role(role: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.sqs", role, *args],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )


# --- child roles ----------------------------------------------------------------------------------


def producer(endpoint: str, url: str) -> None:
    """Keeps the queue short but never empty, until killed: up to three batches of 10 whenever
    fewer than TARGET_DEPTH messages are visible (moto's receive cost grows with the queue's
    length, so a long queue would measure moto's scanning instead of the consumers)."""
    sqs = _boto("sqs", endpoint)
    n = 0
    while True:
        depth = int(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        if depth >= TARGET_DEPTH:
            time.sleep(0.02)
            continue
        for _ in range(min(3, (TARGET_DEPTH - depth + 9) // 10)):
            entries = [{"Id": str(i), "MessageBody": f"reading {n + i}"} for i in range(10)]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
            n += 10


def course_consumer(endpoint: str, name: str, warmup: str, window: str) -> None:
    """lesson 21's consumer.py, timed: prints the count at the end of warm-up and of the window."""
    import boto3

    sqs = boto3.resource("sqs", endpoint_url=endpoint, region_name=REGION)
    queue = sqs.get_queue_by_name(QueueName=name)
    began = time.monotonic()
    warm_end, end = began + float(warmup), began + float(warmup) + float(window)
    count, calls, at_warm, calls_warm, cpu_warm = 0, 0, None, 0, 0.0
    with open(os.devnull, "w") as sink:
        while time.monotonic() < end:
            calls += 1
            for message in queue.receive_messages():
                print(f"{message.body} ", file=sink)
                message.delete()
                count += 1
                calls += 1
            if at_warm is None and time.monotonic() >= warm_end:
                at_warm, calls_warm, cpu_warm = count, calls, _cpu_seconds(os.getpid())
    cpu = _cpu_seconds(os.getpid()) - cpu_warm
    print(json.dumps({"warm": at_warm, "end": count, "cpu": cpu, "calls": calls - calls_warm}))


# --- the benchmark --------------------------------------------------------------------------------


def _queue(endpoint: str, name: str) -> str:
    return str(_boto("sqs", endpoint).create_queue(QueueName=name)["QueueUrl"])


def _depth(endpoint: str, url: str) -> int:
    attrs = _boto("sqs", endpoint).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def consume_course(moto: Moto) -> dict[str, float]:
    url = _queue(moto.endpoint, "course")
    feeder = _start_role("producer", moto.endpoint, url)
    time.sleep(1.0)
    moto_cpu = _cpu_seconds(moto.proc.pid)
    consumer = _start_role("course_consumer", moto.endpoint, "course", str(WARMUP), str(WINDOW))
    out, _ = consumer.communicate(timeout=WARMUP + WINDOW + 60)
    moto_cpu = _cpu_seconds(moto.proc.pid) - moto_cpu
    depth = _depth(moto.endpoint, url)
    feeder.kill()
    feeder.wait()
    result = json.loads(out.strip().splitlines()[-1])
    done = result["end"] - (result["warm"] or 0)
    return {
        "rate": done / WINDOW,
        "calls_per_msg": result["calls"] / max(done, 1),
        "cpu_per_msg": result["cpu"] / max(done, 1),
        "moto_cpu": moto_cpu / (WARMUP + WINDOW),
        "depth": depth,
    }


def consume_awsd(moto: Moto, state: Path, label: str, extra: str = "") -> dict[str, float]:
    url = _queue(moto.endpoint, label)
    sections = (
        f'[sqs.bench]\nqueue = "{url}"\n{extra}'
        'handler = { kind = "python", entrypoint = "bench.sqs:noop" }\n'
    )
    daemon = Daemon(moto.endpoint, sections, state / label)
    feeder = _start_role("producer", moto.endpoint, url)
    try:
        time.sleep(WARMUP)
        before = daemon.status()["workers"]["sqs:bench"]
        cpu, moto_cpu = daemon.cpu(), _cpu_seconds(moto.proc.pid)
        time.sleep(WINDOW)
        after = daemon.status()["workers"]["sqs:bench"]
        cpu, moto_cpu = daemon.cpu() - cpu, _cpu_seconds(moto.proc.pid) - moto_cpu
        depth = _depth(moto.endpoint, url)
    finally:
        feeder.kill()
        feeder.wait()
        daemon.stop()
    done = after["processed"] - before["processed"]
    calls = sum(after["api_calls"].values()) - sum(before["api_calls"].values())
    calls -= after["api_calls"]["empty_receives"] - before["api_calls"]["empty_receives"]
    return {
        "rate": done / WINDOW,
        "calls_per_msg": calls / max(done, 1),
        "cpu_per_msg": cpu / max(done, 1),
        "moto_cpu": moto_cpu / WINDOW,
        "depth": depth,
    }


def publish_course(moto: Moto) -> dict[str, float]:
    sns = _boto("sns", moto.endpoint)
    arn = sns.create_topic(Name="course-pub")["TopicArn"]
    began, cpu = time.monotonic(), _cpu_seconds(os.getpid())
    for x in range(PUBLISH_COUNT):
        sns.publish(TopicArn=arn, Message=str(x))
    took = time.monotonic() - began
    return {
        "rate": PUBLISH_COUNT / took,
        "cpu_per_msg": (_cpu_seconds(os.getpid()) - cpu) / PUBLISH_COUNT,
    }


def publish_awsd(moto: Moto, state: Path) -> dict[str, float]:
    arn = _boto("sns", moto.endpoint).create_topic(Name="awsd-pub")["TopicArn"]
    daemon = Daemon(moto.endpoint, f'[sns]\ntopic = "{arn}"\n', state / "publish")
    try:
        began, cpu = time.monotonic(), daemon.cpu()
        for start in range(0, PUBLISH_COUNT, INGEST_BATCH):
            batch = [{"message": str(x)} for x in range(start, start + INGEST_BATCH)]
            _post_json(f"{daemon.base}/publish", {"messages": batch})
        accepted = time.monotonic() - began
        while daemon.status()["workers"]["outbox"]["outbox"]["waiting"]:
            time.sleep(0.01)
        took = time.monotonic() - began
        cpu = daemon.cpu() - cpu
    finally:
        daemon.stop()
    return {
        "rate": PUBLISH_COUNT / took,
        "accept_rate": PUBLISH_COUNT / accepted,
        "cpu_per_msg": cpu / PUBLISH_COUNT,
    }


def main() -> None:
    print(
        f"one moto server; {os.cpu_count()} cores; warm-up {WARMUP:g} s, window {WINDOW:g} s; "
        f"queues kept at <= {TARGET_DEPTH} messages by a producer process",
        flush=True,
    )
    moto = Moto()
    try:
        with tempfile.TemporaryDirectory(prefix="awsd-bench-") as tmp:
            state = Path(tmp)
            course = consume_course(moto)
            awsd = consume_awsd(moto, state, "awsd")
            wide = consume_awsd(moto, state, "awsd-wide", "max_in_flight = 20\n")
            print(
                "\nconsume: messages/s, client CPU per message, API calls per message, "
                "moto CPU use, final queue depth"
            )
            for name, r in (
                ("course loop (receive_messages + delete)", course),
                ("awsd poller (defaults)", awsd),
                ("awsd poller (max_in_flight = 20)", wide),
            ):
                print(
                    f"  {name:42} {r['rate']:7.1f} msg/s  {r['cpu_per_msg'] * 1e3:6.3f} ms CPU/msg"
                    f"  {r['calls_per_msg']:5.2f} calls/msg  moto {r['moto_cpu'] * 100:3.0f}%"
                    f"  depth {r['depth']:.0f}"
                )
            print(
                f"  ratio awsd/course: {awsd['rate'] / course['rate']:.1f}x (defaults), "
                f"{wide['rate'] / course['rate']:.1f}x (max_in_flight = 20)"
            )
            pub_course = publish_course(moto)
            pub_awsd = publish_awsd(moto, state)
            print(f"\npublish {PUBLISH_COUNT} messages (messages/s)")
            print(
                f"  {'course loop (publish per message)':42} {pub_course['rate']:8.1f} msg/s  "
                f"{pub_course['cpu_per_msg'] * 1e3:6.3f} ms CPU/msg"
            )
            print(
                f"  {'awsd publisher (outbox + PublishBatch)':42} {pub_awsd['rate']:8.1f} msg/s  "
                f"{pub_awsd['cpu_per_msg'] * 1e3:6.3f} ms CPU/msg  "
                f"(accepted into the outbox at {pub_awsd['accept_rate']:.0f} msg/s)"
            )
            print(f"  ratio awsd/course: {pub_awsd['rate'] / pub_course['rate']:.1f}x")
    finally:
        moto.stop()


if __name__ == "__main__":
    roles = {"producer": producer, "course_consumer": course_consumer}
    roles[sys.argv[1]](*sys.argv[2:])
