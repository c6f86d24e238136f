"""`awsd publish`: hand a message to the running daemon's SNS publisher.

It POSTs to the daemon's loopback health server (`POST /publish`, found through the same config
file the daemon runs with) with the ingest token of `<state_dir>/ingest.token` (readable by the
daemon's user and `ingest.group` only: docs/security.md), and returns only once the daemon's
outbox has committed the message, so after exit 0 the message survives a crash, a restart or an
outage. Standard library only: the command starts fast on a Pi.

Exit codes: 0 accepted (with `--wait`: delivered); with `--wait`: 1 dead (AWS refused it for
good), 3 dropped before delivery (the outbox was full), 4 unknown; 2 usage; 65 invalid or
oversize message; 69 daemon not reachable or publisher not configured there; 74 the daemon's
state directory is full; 75 outbox full, over the rate limit, or (`--wait`) not yet delivered;
77 not allowed (no readable token, a destination the config does not allow, `sns.ingest`);
70 the daemon failed to answer (a bug: its log says why); 78 config invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

EX_DEAD = 1
EX_DROPPED = 3
EX_UNKNOWN = 4
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_UNAVAILABLE = 69
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
MAX_MESSAGE_BYTES = 256 * 1024
MAX_RECORD_BYTES = 1024 * 1024 - 256  # a Kinesis record, with room for its partition key
STATUS_EXIT = {
    400: EX_DATAERR,
    401: EX_NOPERM,
    403: EX_NOPERM,
    408: EX_TEMPFAIL,
    413: EX_DATAERR,
    415: EX_DATAERR,
    429: EX_TEMPFAIL,
    500: EX_SOFTWARE,
    507: EX_IOERR,
}


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
        help="also wait until AWS confirmed delivery (exit 75 if still pending, 1 dead, "
        "3 dropped, 4 unknown)",
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
    if config.sns.ingest == "off":
        return _fail('local ingest is off in this config (sns.ingest = "off")', EX_NOPERM)
    try:
        payload = _payload(args)
    except ValueError as exc:
        return _fail(str(exc), EX_DATAERR)
    token = _token(config)
    if isinstance(token, int):
        return token
    from daemon.cli.common import Settings, find_daemon  # noqa: PLC0415

    # The running daemon of this config says where it listens (whatever port an override gave
    # it); else the configured port, and the error below if nothing answers there.
    base = find_daemon(Settings.of(loaded.path, config)).health_url or config.health.url
    timeout = config.outbox.block_timeout + 10.0
    status, answer = _request(base + "/publish", json.dumps(payload).encode(), timeout, token)
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
    return _wait(base, item_id, args.wait, token)


def _token(config: Any) -> str | int:
    """The ingest token, or the exit code after saying why it cannot be had."""
    from daemon.sns.ingest import read_token, token_path  # noqa: PLC0415

    path = token_path(config)
    try:
        return read_token(path)
    except FileNotFoundError:
        return _fail(
            f"no ingest token at {path}: the daemon creates it when it starts with this config "
            "(is it running? systemctl status awsd)",
            EX_UNAVAILABLE,
        )
    except PermissionError:
        return _fail(
            f"cannot read the ingest token {path}: permission denied. Publishing takes the "
            "daemon's user (sudo -u awsd awsd publish ...) or membership of ingest.group "
            "(docs/security.md)",
            EX_NOPERM,
        )
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read the ingest token {path}: {exc}", EX_NOPERM)


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


def _request(url: str, body: bytes | None, timeout: float, token: str) -> tuple[int | None, Any]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
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
        return (
            EX_TEMPFAIL
            if "full" in str(reason) or "cannot write" in str(reason)
            else (EX_UNAVAILABLE)
        )
    if status == 404:
        return EX_UNAVAILABLE  # an awsd without the publish endpoint
    return STATUS_EXIT.get(status, 1)


def _wait(base: str, item_id: int, seconds: float, token: str) -> int:
    give_up = time.monotonic() + seconds
    while True:
        status, answer = _request(f"{base}/publish/{item_id}", None, 5.0, token)
        state = answer.get("status") if status == 200 and isinstance(answer, dict) else None
        reason = answer.get("reason") if isinstance(answer, dict) else None
        if state == "delivered":
            print(f"delivered: outbox id {item_id}")
            return 0
        if state == "dead":
            return _fail(
                f"AWS refused outbox message {item_id} for good ({reason}); see "
                "`awsd outbox --dead`",
                EX_DEAD,
            )
        if state == "dropped":
            return _fail(f"outbox message {item_id} was dropped undelivered ({reason})", EX_DROPPED)
        if state == "unknown":
            return _fail(
                f"the daemon does not know what became of outbox message {item_id}", EX_UNKNOWN
            )
        if status in (401, 403):
            return _fail(f"cannot ask for the status: {answer}", EX_NOPERM)
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
