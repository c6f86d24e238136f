"""The local ingest endpoint: `POST /publish` and `GET /publish/{id}` on the loopback listener.

`awsd publish` talks to it. A write is accepted only when every rule holds, each refusal naming
its rule (docs/security.md):

1. `sns.ingest` lets the client's address in (loopback by default), and the publisher runs;
2. the `Host` header is this listener (an IP address, `localhost`, or `ingest.hosts`: a web page
   reached through a rebound DNS name is refused), and there is no `Origin` header unless
   `ingest.origins` lists it (a browser's request is refused): 403;
3. `Authorization: Bearer <token>` carries the token of `<state_dir>/ingest.token`, a file only
   the daemon's user (and `ingest.group`) can read: 401;
4. the body is `application/json` (415), complete within `health.body_timeout` (408), at most
   2 MiB (413), valid and not absurdly nested (400);
5. the client address is within `ingest.rate` / `ingest.burst` messages (429, Retry-After);
6. every destination is declared in the config or allowed by `ingest.allow` (403);
7. the outbox commits it: 200 with the ids; a full state directory is 507, a full outbox 503.

`GET /publish/{id}` (same rules 1-3) answers the message's status: accepted, delivered, dropped
(with a reason), dead (with AWS's error) or unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import hmac
import ipaddress
import json
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from daemon.base.files import private_dir, read_bounded, write_private
from daemon.config.models import Config
from daemon.core.http import Handler
from daemon.core.logs import get_logger
from daemon.sns.publishing import PublishMetrics, PublishRequest, request_from_json, resolved

if TYPE_CHECKING:
    from daemon.outbox import Message
    from daemon.services import Services

log = get_logger()

TOKEN_FILE = "ingest.token"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_INGEST_MESSAGES = 500
MAX_ID = (1 << 63) - 1
MAX_CLIENTS = 1024
"""Client addresses the rate limiter remembers (the least recent are forgotten)."""


# --- the token ------------------------------------------------------------------------------------


def token_path(config: Config) -> Path:
    return Path(config.runtime.state_dir) / TOKEN_FILE


def read_token(path: Path) -> str:
    """The token in `path`; OSError when it cannot be read, ValueError when it is no token."""
    token = read_bounded(path, 4096).decode("ascii", errors="replace").strip()
    if len(token) < 32 or not _TOKEN.match(token):
        raise ValueError(f"{path} does not hold an ingest token")
    return token


def ensure_token(config: Config) -> str:
    """The ingest token: read from `<state_dir>/ingest.token`, created (0600) when missing or
    unusable; made readable by `ingest.group` when set. Replace the file and reload to rotate."""
    path = token_path(config)
    private_dir(path.parent)
    try:
        token = read_token(path)
    except (OSError, ValueError):
        token = secrets.token_urlsafe(32)
        write_private(path, (token + "\n").encode())
        log.info("ingest token created", path=str(path))
    _grant(path, config.ingest.group)
    return token


def _grant(path: Path, group: str | None) -> None:
    """Token 0600 (0640 with `group`); the state directory 0710 for the group, else untouched."""
    if group is None:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        return
    try:
        gid = grp.getgrnam(group).gr_gid
        os.chown(path, -1, gid)
        os.chmod(path, 0o640)
        os.chown(path.parent, -1, gid)
        os.chmod(path.parent, 0o710)
    except (KeyError, OSError) as exc:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        log.warning(
            "ingest.group not applied: only the daemon's user can read the ingest token",
            group=group,
            error=str(exc) if isinstance(exc, OSError) else "no such group",
        )


# --- the rate -------------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per client address (`rate` per second, up to `burst`), bounded."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, count: int) -> float:
        """Take `count` tokens; 0.0 when granted, else seconds until they would be."""
        now = self.clock()
        level, then = self._buckets.pop(client, (float(self.burst), now))
        level = min(float(self.burst), level + (now - then) * self.rate)
        granted = count <= level
        self._buckets[client] = (level - count if granted else level, now)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        if granted:
            return 0.0
        return (count - level) / self.rate if count <= self.burst else float("inf")


# --- the endpoint ---------------------------------------------------------------------------------


class Ingest:
    """The ingest endpoint of one daemon (process lifetime; `prepare` on start and reload)."""

    def __init__(self, services: Callable[[], Services | None], *, port: Callable[[], int | None]):
        self.services = services
        self.port = port
        """The port the listener is bound to (the Host header must name it)."""
        self.token: str | None = None
        self.token_file: Path | None = None
        self.limiter: RateLimiter | None = None

    def prepare(self, config: Config) -> None:
        """Read (or create) the token and take the rate settings. Raises OSError when the token
        file cannot be written (the daemon does not start; a reload keeps the running config)."""
        ingest = config.ingest
        loop = asyncio.get_running_loop()
        if self.limiter is None or (self.limiter.rate, self.limiter.burst) != (
            ingest.rate,
            ingest.burst,
        ):
            self.limiter = RateLimiter(ingest.rate, ingest.burst, loop.time)
        if config.sns is None or config.sns.ingest == "off":
            self.token, self.token_file = None, None
            return
        self.token_file = token_path(config)
        self.token = ensure_token(config)

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("POST", "/publish", self.post), ("GET", "/publish/{id}", self.get)]

    # --- handlers ---------------------------------------------------------------------------------

    async def post(self, request: web.Request) -> web.StreamResponse:
        current = self.services()
        refusal = self._refusal(request, current)
        if refusal is not None:
            return refusal
        assert current is not None and current.config.sns is not None
        if request.content_type != "application/json":
            return _error(415, "the body must be JSON, sent as Content-Type: application/json")
        metrics = PublishMetrics(current.metrics)
        raw = await _read(request, current.config.health.body_timeout)
        if isinstance(raw, web.Response):
            return raw
        try:
            requests = _parse(raw)
        except ValueError as exc:
            metrics.refused.labels(source="ingest", reason="invalid").inc()
            return _error(400, str(exc))
        assert self.limiter is not None
        wait = self.limiter.take(request.remote or "?", len(requests))
        if wait:
            metrics.refused.labels(source="ingest", reason="rate").inc()
            if wait == float("inf"):
                return _error(
                    429, f"{len(requests)} messages exceed ingest.burst; split the request"
                )
            return _error(
                429,
                f"over this client's rate (ingest.rate = {self.limiter.rate:g}/s)",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        return await self._publish(current, requests, metrics)

    async def _publish(
        self, current: Services, requests: list[PublishRequest], metrics: PublishMetrics
    ) -> web.Response:
        from daemon.outbox import OutboxDiskFull, OutboxFull  # noqa: PLC0415

        assert current.config.sns is not None
        try:
            messages = [r.to_message(current.config.sns.topic, origin="ingest") for r in requests]
            messages = [await resolved(current, m) for m in messages]
            _check(messages)
            for i, r in enumerate(requests):
                forbidden = await _forbidden(current, r)
                if forbidden:
                    metrics.refused.labels(source="ingest", reason="not allowed").inc()
                    return _error(
                        403, f"message {i}: {forbidden}" if len(requests) > 1 else forbidden
                    )
            ids = await current.outbox.put_many(messages)
        except ValueError as exc:  # InvalidMessage is a ValueError
            metrics.refused.labels(source="ingest", reason="invalid").inc()
            return _error(400, str(exc))
        except OutboxDiskFull as exc:
            metrics.refused.labels(source="ingest", reason="disk full").inc()
            return _error(507, str(exc), headers={"Retry-After": "30"})
        except OutboxFull as exc:
            metrics.refused.labels(source="ingest", reason="full").inc()
            return _error(503, str(exc), headers={"Retry-After": "5"})
        metrics.accepted.labels(source="ingest").inc(len(ids))
        targets = [f"{m.kind}:{m.target}" for m in messages]
        return web.json_response({"ids": ids, "targets": targets, "status": "accepted"})

    async def get(self, request: web.Request) -> web.StreamResponse:
        current = self.services()
        refusal = self._refusal(request, current)
        if refusal is not None:
            return refusal
        assert current is not None
        text = request.match_info["id"]
        try:
            item_id = int(text) if len(text) <= 20 else MAX_ID + 1
        except ValueError:
            return _error(400, "the id is a whole number")
        if abs(item_id) > MAX_ID:
            return _error(400, f"the id is out of range (at most {MAX_ID})")
        status = await current.outbox.status(item_id)
        return web.json_response(status.to_json())

    # --- the rules --------------------------------------------------------------------------------

    def _refusal(self, request: web.Request, services: Services | None) -> web.Response | None:
        if services is None or services.config.sns is None:
            return _error(503, "the SNS publisher is not configured (no [sns] section)")
        config = services.config
        assert config.sns is not None
        if config.sns.ingest == "off":
            return _error(403, 'local ingest is off (sns.ingest = "off")')
        if config.sns.ingest == "loopback" and not _is_loopback(request.remote):
            return _error(403, "publishing is only accepted from loopback (sns.ingest)")
        host = _host_problem(request.headers.get("Host"), self.port(), config.ingest.hosts)
        if host:
            return _error(403, host)
        origin = request.headers.get("Origin")
        if origin is not None and origin not in config.ingest.origins:
            return _error(
                403,
                f"requests from web pages are refused (Origin {origin[:100]!r} is not in "
                "ingest.origins)",
            )
        return self._unauthorized(request)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        token = self.token
        if (
            token
            and scheme.lower() == "bearer"
            and hmac.compare_digest(credential.strip().encode(), token.encode())
        ):
            return None
        where = f" (the token is in {self.token_file})" if self.token_file else ""
        reason = "a wrong token" if given else "no token"
        return _error(
            401,
            f"{reason}: send Authorization: Bearer <ingest token>{where}; `awsd publish` "
            "reads it when run as the daemon's user or a member of ingest.group",
            headers={"WWW-Authenticate": 'Bearer realm="awsd ingest"'},
        )


async def _read(request: web.Request, timeout: float) -> bytes | web.Response:
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "request body larger than the 2 MiB the endpoint takes")
    except TimeoutError:
        return _error(408, f"the body did not arrive within health.body_timeout ({timeout:g} s)")
    except (ConnectionError, OSError, ValueError, RuntimeError) as exc:  # aborted half-way
        return _error(400, f"the body could not be read: {type(exc).__name__}")


def _host_problem(host: str | None, port: int | None, names: list[str]) -> str | None:
    if not host:
        return "a Host header is required"
    if host.startswith("["):  # [IPv6]:port
        name, _, rest = host[1:].partition("]")
        given_port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, _, given_port = host.partition(":")
    else:
        name, given_port = host, ""
    if port is not None and given_port != str(port):
        return f"the Host header {host[:100]!r} does not name this listener's port {port}"
    bare = name.strip("[]").lower()
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        if bare != "localhost" and bare not in (n.lower() for n in names):
            return (
                f"the Host header names {bare[:100]!r}, not this listener (an IP address, "
                "localhost, or ingest.hosts): refused against DNS rebinding"
            )
    return None


async def _forbidden(services: Services, request: PublishRequest) -> str | None:
    """Why `request` may not go where it goes, or None (see `ingest.allow`)."""
    config = services.config
    assert config.sns is not None
    if request.phone:
        numbers = {n for ep in config.probes.endpoints.values() for n in ep.alert.sms}
        numbers.update(config.probes.defaults.alert.sms)
        if request.phone in numbers or _allowed(request.phone, config.ingest.allow):
            return None
        return (
            f"SMS to {request.phone} is not allowed: ingest sends SMS only to numbers probe "
            "alerts use or ingest.allow lists"
        )
    kind, ref = ("streams", request.stream) if request.stream else ("topics", request.topic)
    if ref is None:
        return None  # the default topic (sns.topic), or none: refused as invalid later
    declared = config.resources.of_kind(kind)
    if ref in declared or (kind == "topics" and ref == config.sns.topic):
        return None
    if _allowed(ref, config.ingest.allow):
        return None
    if await _declared_aws_name(services, kind, ref):
        return None
    what = "topic" if kind == "topics" else "stream"
    return (
        f"{what} {ref!r} is not allowed: ingest publishes to declared {kind} "
        f"([resources.{kind}]){', sns.topic' if kind == 'topics' else ''} and what "
        "ingest.allow lists"
    )


async def _declared_aws_name(services: Services, kind: str, ref: str) -> bool:
    """True when `ref` is a declared resource's AWS name or ARN (resolving may need the
    account id: any failure counts as not declared)."""
    declared = services.config.resources.of_kind(kind)
    try:
        for logical in declared:
            if ref in (
                await services.targets.aws_name(kind, logical),
                await services.targets.arn(kind, logical) if ref.startswith("arn:") else None,
            ):
                return True
    except Exception:  # noqa: BLE001 - unresolvable: not shown to be declared
        return False
    return False


def _allowed(ref: str, patterns: list[str]) -> bool:
    return any(ref.startswith(p[:-1]) if p.endswith("*") else ref == p for p in patterns)


def _parse(raw: bytes) -> list[PublishRequest]:
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("the request body is nested too deeply") from None
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if isinstance(data, dict) and "messages" in data:
        items = data["messages"]
        if not isinstance(items, list) or not items:
            raise ValueError("'messages' must be a non-empty list")
        if len(items) > MAX_INGEST_MESSAGES:
            raise ValueError(f"at most {MAX_INGEST_MESSAGES} messages per request")
    else:
        items = [data]
    requests = []
    for i, item in enumerate(items):
        try:
            requests.append(request_from_json(item, source="ingest"))
        except ValueError as exc:
            raise ValueError(f"message {i}: {exc}" if len(items) > 1 else str(exc)) from None
    return requests


def _check(messages: list[Message]) -> None:
    """The senders' own checks, naming the message at fault in a batch."""
    from daemon.outbox.senders import SENDERS  # noqa: PLC0415

    for i, message in enumerate(messages):
        try:
            SENDERS[message.kind].validate(message.target, message.body)
        except ValueError as exc:
            raise ValueError(f"message {i}: {exc}" if len(messages) > 1 else str(exc)) from None


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)
