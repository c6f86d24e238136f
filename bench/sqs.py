"""SQS consume and SNS publish behind an emulated network round trip: the simple loops against
awsd, side by side on one moto server and one latency proxy per round trip.

    python -m bench sqs [--rtt 0,20,60]

Every client reaches moto through `bench/latency.py`, a TCP proxy holding each chunk for half
the round trip each way (real AWS calls cost 10-30 ms from an instance in the region, 30-100 ms
from a home network); both sides of each comparison go through the same proxy.

Consume: the simple consumer loop (boto3 resource, `queue.receive_messages()` with its defaults:
one message per receive; `message.delete()` per message) against the awsd poller (a real `awsd
run` process with a no-op python handler, default settings: batch 10, 10 in flight, 20 s long
polls; and with `max_in_flight = 30`, three receives in flight at once), each on its own
standard queue kept short by a producer process running alongside, straight to moto
(SendMessageBatch, paused while the queue holds more than a few dozen messages: moto's receive
cost grows with the queue's length). Steady state: a warm-up, then a fixed window.

Publish: the simple publisher loop (one Publish per message, one after the other, for a fixed
window) against the awsd publisher: messages POSTed to a running daemon (`POST /publish`, 50 per
request, on loopback: only the AWS side crosses the proxy), committed to the durable outbox
(fsync) and delivered with PublishBatch; measured from the first POST to the outbox being empty.
Topics have no subscribers, so both measure publishing only.

Reported per round trip: messages/s, the ratio, client CPU per message (the loop's process, or
the whole daemon), API calls per message (every call, empty receives included), and the CPU use
of moto and of the proxy over the window, as a share of one core: moto near 100 % means moto is
the ceiling, not the client.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.latency import Proxy, cpu_seconds, parse_rtts

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
WARMUP = 3.0
WINDOW = 15.0
PUBLISH_WINDOW = 10.0
PUBLISH_COUNT = 3000
INGEST_BATCH = 50
TARGET_DEPTH = 30
WIDE = 30
"""`max_in_flight` of the second awsd run: room for three batches, so three receives at once."""


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


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


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

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class Daemon:
    """A real `awsd run` process whose AWS endpoint is `endpoint`."""

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
        return json.loads(_get(f"{self.base}/status"))  # type: ignore[no-any-return]

    def api_calls(self, service: str) -> float:
        """AWS API calls the daemon made to `service` (its awsd_aws_api_calls_total)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = _get(f"{self.base}/metrics").decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "awsd_aws_api_calls"
            for sample in family.samples
            if sample.name == "awsd_aws_api_calls_total" and sample.labels["service"] == service
        )

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

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


class Usage:
    """CPU seconds of moto and of the proxy over a span, as shares of one core."""

    def __init__(self, moto: Moto, proxy: Proxy) -> None:
        self.moto, self.proxy = moto, proxy
        self.began = time.monotonic()
        self.moto_cpu, self.proxy_cpu = moto.cpu(), proxy.cpu()

    def shares(self) -> dict[str, float]:
        span = time.monotonic() - self.began
        return {
            "moto": (self.moto.cpu() - self.moto_cpu) / span,
            "proxy": (self.proxy.cpu() - self.proxy_cpu) / span,
        }


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
            time.sleep(0.05)  # (its own calls cost moto CPU too: not too often)
            continue
        for _ in range(min(3, (TARGET_DEPTH - depth + 9) // 10)):
            entries = [{"Id": str(i), "MessageBody": f"reading {n + i}"} for i in range(10)]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
            n += 10


def simple_consumer(endpoint: str, name: str, warmup: str, window: str) -> None:
    """The simple consumer loop, timed: prints its counts at the end of the window."""
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
                at_warm, calls_warm, cpu_warm = count, calls, cpu_seconds(os.getpid())
    cpu = cpu_seconds(os.getpid()) - cpu_warm
    print(json.dumps({"warm": at_warm, "end": count, "cpu": cpu, "calls": calls - calls_warm}))


def simple_publisher(endpoint: str, arn: str, window: str) -> None:
    """The simple publisher loop for `window` seconds: prints its count and CPU."""
    sns = _boto("sns", endpoint)
    sns.publish(TopicArn=arn, Message="warm-up")  # the client's first call loads its model
    began, cpu, count = time.monotonic(), cpu_seconds(os.getpid()), 0
    while time.monotonic() - began < float(window):
        sns.publish(TopicArn=arn, Message=str(count))
        count += 1
    took = time.monotonic() - began
    print(json.dumps({"count": count, "seconds": took, "cpu": cpu_seconds(os.getpid()) - cpu}))


# --- the benchmark --------------------------------------------------------------------------------


def _queue(endpoint: str, name: str) -> str:
    return str(_boto("sqs", endpoint).create_queue(QueueName=name)["QueueUrl"])


def consume_simple(moto: Moto, proxy: Proxy, name: str) -> dict[str, float]:
    url = _queue(moto.endpoint, name)
    feeder = _start_role("producer", moto.endpoint, url)
    time.sleep(1.0)
    consumer = _start_role("simple_consumer", proxy.url, name, str(WARMUP), str(WINDOW))
    time.sleep(WARMUP)
    usage = Usage(moto, proxy)
    out, _ = consumer.communicate(timeout=WARMUP + WINDOW + 120)
    shares = usage.shares()
    feeder.kill()
    feeder.wait()
    result = json.loads(out.strip().splitlines()[-1])
    done = result["end"] - (result["warm"] or 0)
    return {
        "rate": done / WINDOW,
        "calls_per_msg": result["calls"] / max(done, 1),
        "cpu_per_msg": result["cpu"] / max(done, 1),
        **shares,
    }


def consume_awsd(
    moto: Moto, proxy: Proxy, state: Path, label: str, extra: str = ""
) -> dict[str, float]:
    url = _queue(moto.endpoint, label)
    sections = (
        f'[sqs.bench]\nqueue = "{url}"\n{extra}'
        'handler = { kind = "python", entrypoint = "bench.sqs:noop" }\n'
    )
    daemon = Daemon(proxy.url, sections, state / label)
    feeder = _start_role("producer", moto.endpoint, url)
    try:
        time.sleep(WARMUP)
        before = daemon.status()["workers"]["sqs:bench"]["processed"]
        calls, cpu, usage = daemon.api_calls("sqs"), daemon.cpu(), Usage(moto, proxy)
        time.sleep(WINDOW)
        done = daemon.status()["workers"]["sqs:bench"]["processed"] - before
        calls, cpu = daemon.api_calls("sqs") - calls, daemon.cpu() - cpu
        shares = usage.shares()
    finally:
        feeder.kill()
        feeder.wait()
        daemon.stop()
    return {
        "rate": done / WINDOW,
        "calls_per_msg": calls / max(done, 1),
        "cpu_per_msg": cpu / max(done, 1),
        **shares,
    }


def publish_simple(moto: Moto, proxy: Proxy, name: str) -> dict[str, float]:
    arn = _boto("sns", moto.endpoint).create_topic(Name=name)["TopicArn"]
    usage = Usage(moto, proxy)
    publisher = _start_role("simple_publisher", proxy.url, arn, str(PUBLISH_WINDOW))
    out, _ = publisher.communicate(timeout=PUBLISH_WINDOW + 120)
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "rate": result["count"] / result["seconds"],
        "cpu_per_msg": result["cpu"] / max(result["count"], 1),
        "calls_per_msg": 1.0,
        **usage.shares(),
    }


def publish_awsd(moto: Moto, proxy: Proxy, state: Path, name: str) -> dict[str, float]:
    arn = _boto("sns", moto.endpoint).create_topic(Name=name)["TopicArn"]
    daemon = Daemon(proxy.url, f'[sns]\ntopic = "{arn}"\n', state / name)
    try:
        calls, cpu, usage = daemon.api_calls("sns"), daemon.cpu(), Usage(moto, proxy)
        began = time.monotonic()
        for start in range(0, PUBLISH_COUNT, INGEST_BATCH):
            batch = [{"message": str(x)} for x in range(start, start + INGEST_BATCH)]
            _post_json(f"{daemon.base}/publish", {"messages": batch})
        accepted = time.monotonic() - began
        while daemon.status()["workers"]["outbox"]["outbox"]["waiting"]:
            time.sleep(0.01)
        took = time.monotonic() - began
        calls, cpu = daemon.api_calls("sns") - calls, daemon.cpu() - cpu
        shares = usage.shares()
    finally:
        daemon.stop()
    return {
        "rate": PUBLISH_COUNT / took,
        "accept_rate": PUBLISH_COUNT / accepted,
        "cpu_per_msg": cpu / PUBLISH_COUNT,
        "calls_per_msg": calls / PUBLISH_COUNT,
        **shares,
    }


def _row(name: str, r: dict[str, float], base: dict[str, float]) -> str:
    moto_ms = r["moto"] / max(r["rate"], 1e-9) * 1e3
    return (
        f"  {name:40} {r['rate']:7.1f} msg/s {r['rate'] / base['rate']:5.1f}x"
        f"  {r['cpu_per_msg'] * 1e3:6.3f} ms CPU/msg  {r['calls_per_msg']:5.2f} calls/msg"
        f"  moto {r['moto'] * 100:3.0f}% ({moto_ms:4.1f} ms/msg)  proxy {r['proxy'] * 100:3.0f}%"
    )


def run_rtt(moto: Moto, state: Path, rtt: float) -> dict[str, dict[str, float]]:
    proxy = Proxy(moto.endpoint, rtt)
    tag = f"rtt{rtt:g}"
    try:
        results = {
            "consume simple": consume_simple(moto, proxy, f"simple-{tag}"),
            "consume awsd": consume_awsd(moto, proxy, state, f"awsd-{tag}"),
            "consume awsd wide": consume_awsd(
                moto, proxy, state, f"awsd-wide-{tag}", f"max_in_flight = {WIDE}\n"
            ),
            "publish simple": publish_simple(moto, proxy, f"simple-pub-{tag}"),
            "publish awsd": publish_awsd(moto, proxy, state, f"awsd-pub-{tag}"),
        }
    finally:
        proxy.stop()
    print(f"\nround trip {rtt:g} ms", flush=True)
    print(
        "  consume: messages/s, vs the simple loop, client CPU per message, API calls per message,"
        " CPU of moto (share of one core, and per message: 1000 / that is its ceiling in msg/s)"
        " and of the proxy"
    )
    base = results["consume simple"]
    print(_row("simple loop (receive_messages + delete)", base, base))
    print(_row("awsd poller (defaults)", results["consume awsd"], base))
    print(_row(f"awsd poller (max_in_flight = {WIDE})", results["consume awsd wide"], base))
    base = results["publish simple"]
    print("  publish:")
    print(_row("simple loop (publish per message)", base, base))
    pub = results["publish awsd"]
    print(_row("awsd publisher (outbox + PublishBatch)", pub, base))
    print(f"  {'':40} (accepted into the outbox at {pub['accept_rate']:.0f} msg/s)", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench sqs")
    parser.add_argument("--rtt", default="0,20,60", help="round trips to emulate, in ms")
    args = parser.parse_args(argv or [])
    rtts = parse_rtts(args.rtt)
    print(
        f"one moto server; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
        f"round trips {', '.join(f'{r:g}' for r in rtts)} ms; warm-up {WARMUP:g} s, "
        f"window {WINDOW:g} s; queues kept at <= {TARGET_DEPTH} messages by a producer process",
        flush=True,
    )
    moto = Moto()
    summary = []
    try:
        with tempfile.TemporaryDirectory(prefix="awsd-bench-") as tmp:
            for rtt in rtts:
                r = run_rtt(moto, Path(tmp), rtt)
                summary.append(
                    (
                        rtt,
                        r["consume awsd"]["rate"] / r["consume simple"]["rate"],
                        r["consume awsd wide"]["rate"] / r["consume simple"]["rate"],
                        r["publish awsd"]["rate"] / r["publish simple"]["rate"],
                    )
                )
    finally:
        moto.stop()
    print(
        f"\nratios awsd / simple loop (consume defaults, consume max_in_flight = {WIDE}, publish):"
    )
    for rtt, consume, wide, publish in summary:
        print(f"  {rtt:5g} ms: {consume:5.1f}x  {wide:5.1f}x  {publish:5.1f}x")


if __name__ == "__main__":
    roles = {
        "producer": producer,
        "simple_consumer": simple_consumer,
        "simple_publisher": simple_publisher,
    }
    roles[sys.argv[1]](*sys.argv[2:])
