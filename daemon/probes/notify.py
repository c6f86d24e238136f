"""Notifications: the outbox messages one alert (or a group of alerts) becomes.

- To an SNS topic: the full story as JSON (every alert of the group, with reason, detail,
  latency, status, when it opened), a subject line (printable ASCII under 100 characters, as
  SNS asks)
  and message attributes (`event`, `endpoint`, `env`) that subscriptions can filter on.
- To a phone number (SMS): one line of at most 140 bytes of UTF-8 with the name, the state, the
  reason and the latency, e.g. `DOWN shop: timeout (10000ms)`. The line is printable ASCII (so
  SNS sends it as one GSM-7 part, never as 70-character UCS-2); whatever is too long is cut with
  `...`.

URLs and details leave the process here: they pass through the one URL redaction
(`base/redact.py`), so an alert never carries a password or a secret query value.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.base.redact import redact_text, redact_url
from daemon.outbox import Message
from daemon.probes.alerts import Event, Notice

SMS_MAX_BYTES = 140
SUBJECT_MAX = 99
MARK = "..."
ORIGIN = "probes"
_STATE = {
    Event.OPEN: "DOWN",
    Event.REMINDER: "STILL DOWN",
    Event.RESOLVED: "UP",
    Event.HOST_OFFLINE: "OFFLINE",
    Event.HOST_ONLINE: "ONLINE",
}


def ours(origin: str) -> bool:
    """Whether an outbox message's origin is the probe worker's."""
    return origin == ORIGIN or origin.startswith(ORIGIN + ":")


@dataclass(frozen=True, slots=True)
class Targets:
    """Where one group of notices goes."""

    topic: str | None
    sms: tuple[str, ...]


def messages(
    notices: Sequence[Notice],
    targets: Targets,
    *,
    env: str,
    urls: dict[str, str],
    tags: dict[str, list[str]] | None = None,
    host: str | None = None,
    origin: str = ORIGIN,
) -> list[Message]:
    """The outbox messages for notices of one event kind going to the same targets; `origin`
    is `ORIGIN` or starts with `ORIGIN:` (see `ours`)."""
    host = host or socket.gethostname()
    out: list[Message] = []
    if targets.topic:
        body = {
            "message": json.dumps(
                document(notices, env=env, urls=urls, tags=tags or {}, host=host),
                separators=(",", ":"),
            ),
            "subject": subject(notices, env=env, host=host),
            "attributes": {
                "event": str(notices[0].event),
                "endpoint": notices[0].endpoint if len(notices) == 1 else "*",
                "env": env,
            },
        }
        out.append(Message("sns", targets.topic, body, origin))
    line = sms_line(notices, host=host)
    out += [Message("sms", number, {"message": line}, origin) for number in targets.sms]
    return out


def document(
    notices: Sequence[Notice],
    *,
    env: str,
    urls: dict[str, str],
    tags: dict[str, list[str]],
    host: str,
) -> dict[str, object]:
    event = notices[0].event
    return {
        "source": "awsd",
        "type": "probe_alert",
        "event": str(event),
        "state": _STATE[event].lower().replace(" ", "_"),
        "env": env,
        "host": host,
        "at": _iso(notices[0].at),
        "count": len(notices),
        "alerts": [_alert(n, urls, tags) for n in notices],
    }


def _alert(n: Notice, urls: dict[str, str], tags: dict[str, list[str]]) -> dict[str, object]:
    r = n.result
    return {
        "endpoint": n.endpoint,
        "url": redact_url(url) if (url := urls.get(n.endpoint)) else None,
        "tags": tags.get(n.endpoint, []),
        "event": str(n.event),
        "reason": n.reason if n.event is not Event.RESOLVED else None,
        "detail": redact_text(detail) if (detail := r.detail if r else n.detail) else detail,
        "status": r.status if r else None,
        "latency_ms": r.latency_ms if r else None,
        "opened_at": _iso(n.opened_at) if n.opened_at else None,
        "down_for_s": round(n.at - n.opened_at, 3) if n.opened_at else None,
        "at": _iso(n.at),
    }


def subject(notices: Sequence[Notice], *, env: str, host: str) -> str:
    event = notices[0].event
    state = _STATE[event]
    if event in (Event.HOST_OFFLINE, Event.HOST_ONLINE):
        text = f"[awsd {env}] probe host {host} {state}"
    elif len(notices) == 1:
        n = notices[0]
        text = f"[awsd {env}] {state} {n.endpoint}{_why(n)}"
    else:
        text = f"[awsd {env}] {len(notices)} endpoints {state}: " + ", ".join(
            n.endpoint for n in notices
        )
    # SNS subjects: printable ASCII, no line breaks, under 100 characters.
    text = ascii_only(text)
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - len(MARK)] + MARK


def sms_line(notices: Sequence[Notice], *, host: str) -> str:
    """One line, at most 140 bytes: state, name, reason, latency."""
    event = notices[0].event
    state = _STATE[event]
    if event in (Event.HOST_OFFLINE, Event.HOST_ONLINE):
        tail = ": alerts held" if event is Event.HOST_OFFLINE else ""
        return fit(f"probe host {state}{tail}: ", host, "")
    if len(notices) == 1:
        n = notices[0]
        latency = f" ({n.result.latency_ms}ms)" if n.result else ""
        return fit(f"{state} ", n.endpoint, f"{_why(n)}{latency}")
    return _group_line(state, [n.endpoint for n in notices])


def _why(n: Notice) -> str:
    """`: reason` (with the code for a status failure); nothing for a resolution."""
    if n.event is Event.RESOLVED or not n.reason:
        return ""
    if n.reason == "status" and n.result is not None and n.result.status is not None:
        return f": status {n.result.status}"
    return f": {n.reason}"


def _group_line(state: str, names: list[str]) -> str:
    head = f"{len(names)} {state}: "
    for shown in range(len(names), 0, -1):
        rest = len(names) - shown
        line = head + ", ".join(names[:shown]) + (f" +{rest}" if rest else "")
        if len(line) <= SMS_MAX_BYTES:
            return line
    return fit(head, names[0], f" +{len(names) - 1}")


def fit(head: str, middle: str, tail: str, limit: int = SMS_MAX_BYTES) -> str:
    """`head + middle + tail` in printable ASCII, cutting `middle` (else the whole line) to fit
    `limit` bytes."""
    head, middle, tail = ascii_only(head), ascii_only(middle), ascii_only(tail)
    line = head + middle + tail
    if len(line) <= limit:
        return line
    room = limit - len(head) - len(tail) - len(MARK)
    if room > 0:
        return head + middle[:room] + MARK + tail
    return line[: limit - len(MARK)] + MARK


def ascii_only(text: str) -> str:
    """Printable ASCII: anything else (line breaks, accents, emoji) becomes `?`."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
