"""`awsd publish`: hand a message to the running daemon's SNS publisher.

It POSTs to the daemon's loopback health server (`POST /publish`, found through the same config
file the daemon runs with) and returns only once the daemon's outbox has committed the message,
so after exit 0 the message survives a crash, a restart or an outage. Standard library only: the
command starts fast on a Pi.

Exit codes: 0 accepted (with `--wait`: delivered), 1 rejected by AWS (`--wait`), 2 usage,
65 invalid or oversize message, 69 daemon not reachable or publisher not configured there,
75 outbox full or (`--wait`) not yet delivered, 77 not allowed (`sns.ingest`), 78 config invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_NOPERM = 77
MAX_MESSAGE_BYTES = 256 * 1024
MAX_RECORD_BYTES = 1024 * 1024 - 256  # a Kinesis record, with room for its partition key
STATUS_EXIT = {400: EX_DATAERR, 403: EX_NOPERM, 413: EX_DATAERR}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from daemon.cli.common import add_config_args  # noqa: PLC0415

    parser = sub.add_parser(
        "publish",
        help="publish a message through the running daemon (durable: returns once queued)",
        description="Publish MESSAGE (or stdin with '-') to an SNS topic, or as an SMS, through "
        "the running daemon's durable outbox.",
    )
    add_config_args(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--topic", "-t", help="topic name or ARN (default: sns.topic)")
    target.add_argument("--phone", help="send an SMS to this E.164 number instead (+4477...)")
    target.add_argument("--stream", help="put a record on this Kinesis stream instead")
    parser.add_argument(
        "--partition-key",
        help="record partition key (with --stream; default: random, spread over every shard)",
    )
    parser.add_argument("--subject", "-s", help="SNS subject (under 100 ASCII characters)")
    parser.add_argument(
        "--attr",
        "-a",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="message attribute (repeatable, at most 10)",
    )
    parser.add_argument("--group-id", help="message group id (FIFO topics)")
    parser.add_argument("--dedup-id", help="deduplication id (FIFO topics; default: content hash)")
    parser.add_argument(
        "--sms-type", choices=("Transactional", "Promotional"), help="SMS type (with --phone)"
    )
    parser.add_argument("--sender-id", help="SMS sender id (with --phone)")
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="also wait until AWS confirmed delivery (exit 75 if still pending)",
    )
    parser.add_argument("message", metavar="MESSAGE", help="the message, or '-' to read stdin")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from daemon.cli.common import config_failure, load_from_args  # noqa: PLC0415
    from daemon.config import EX_CONFIG, ConfigError  # noqa: PLC0415

    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    config = loaded.config
    if config.sns is None:
        return _fail(
            f"{loaded.path} has no [sns] section: the publisher is not configured", EX_CONFIG
        )
    if not config.health.port:
        return _fail("the health server is off (health.port = 0); awsd publish needs it", EX_CONFIG)
    try:
        payload = _payload(args)
    except ValueError as exc:
        return _fail(str(exc), EX_DATAERR)
    from daemon.cli.common import Settings, find_daemon  # noqa: PLC0415

    # The running daemon of this config says where it listens (whatever port an override gave
    # it); else the configured port, and the error below if nothing answers there.
    base = find_daemon(Settings.of(loaded.path, config)).health_url or config.health.url
    timeout = config.outbox.block_timeout + 10.0
    status, answer = _request(base + "/publish", json.dumps(payload).encode(), timeout)
    if status is None:
        return _fail(
            f"cannot reach the daemon at {base} ({answer}); is it running with "
            f"{loaded.path}? (systemctl status awsd)",
            EX_UNAVAILABLE,
        )
    if status != 200:
        return _fail(f"message refused: {answer}", _refused_exit(status, answer))
    item_id = answer["ids"][0]
    print(f"accepted: outbox id {item_id} -> {answer['targets'][0]}")
    if args.wait is None:
        return 0
    return _wait(base, item_id, args.wait)


def _payload(args: argparse.Namespace) -> dict[str, Any]:
    if args.message == "-":
        raw = sys.stdin.buffer.read()
        try:
            message = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"stdin is not UTF-8 text (bad byte at offset {exc.start}); SNS carries text"
            ) from None
    else:
        message = args.message
    if not message:
        raise ValueError("the message is empty")
    size = len(message.encode())
    limit, service = (MAX_RECORD_BYTES, "Kinesis") if args.stream else (MAX_MESSAGE_BYTES, "SNS")
    if size > limit:
        raise ValueError(f"the message is {size} bytes; {service} takes at most {limit}")
    if args.partition_key and not args.stream:
        raise ValueError("--partition-key goes with --stream")
    attributes: dict[str, str] = {}
    for item in args.attr:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--attr {item!r}: write NAME=VALUE")
        attributes[name] = value
    from daemon.sns.publishing import TEXT_FIELDS  # noqa: PLC0415 - the command's own import

    payload: dict[str, Any] = {"message": message}
    for key in TEXT_FIELDS:
        value = getattr(args, key)
        if value is not None:
            payload[key] = value
    if attributes:
        payload["attributes"] = attributes
    return payload


def _request(url: str, body: bytes | None, timeout: float) -> tuple[int | None, Any]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw).get("error", raw.decode(errors="replace"))
        except ValueError:
            return exc.code, raw.decode(errors="replace").strip() or exc.reason
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, str(getattr(reason, "strerror", None) or reason)


def _refused_exit(status: int, reason: Any) -> int:
    if status == 503:
        return EX_TEMPFAIL if "full" in str(reason) else EX_UNAVAILABLE
    if status == 404:
        return EX_UNAVAILABLE  # an awsd without the publish endpoint
    return STATUS_EXIT.get(status, 1)


def _wait(base: str, item_id: int, seconds: float) -> int:
    give_up = time.monotonic() + seconds
    while True:
        status, answer = _request(f"{base}/publish/{item_id}", None, 5.0)
        state = answer.get("status") if status == 200 and isinstance(answer, dict) else None
        if state == "delivered":
            print(f"delivered: outbox id {item_id}")
            return 0
        if state == "dead":
            return _fail(f"AWS rejected outbox message {item_id}; see `awsd outbox --dead`", 1)
        if time.monotonic() >= give_up:
            return _fail(
                f"outbox message {item_id} is still pending after {seconds:g}s; it stays in "
                "the outbox and will be delivered",
                EX_TEMPFAIL,
            )
        time.sleep(0.1)


def _fail(reason: str, code: int) -> int:
    print(f"awsd: {reason}", file=sys.stderr)
    return code
