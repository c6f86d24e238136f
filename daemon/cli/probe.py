"""`awsd probe URL [CONDITION ...]`: one check, the full result, exit 0 (up) or 1 (down).

A plain uptime check answers with `requests.get(url).elapsed`; this answers with what the probe
engine sees: success and the failure reason, per-phase timings, status, size, TLS
version and certificate expiry, and every condition checked. Conditions use the config's field
names (`status=2xx,301 max_latency=500ms body_regex=ok json.status=UP header.content-type=json
cert_expiry_days=14`), so a line tried here can be pasted into `[probes.endpoints.NAME]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

USAGE_CONDITIONS = (
    "conditions, as FIELD=VALUE: status=2xx,301-302  max_latency=500ms  body_regex=RE  "
    "body_not_regex=RE  json.PATH=VALUE  header.NAME=RE  cert_expiry_days=N  "
    "chain_expiry_days=N  answers=ADDR,ADDR (dns)"
)


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "probe",
        help="probe a URL once and print the full result (exit 0 up, 1 down)",
        description="Probe http(s)://, tcp://HOST:PORT or dns://NAME once. " + USAGE_CONDITIONS,
    )
    parser.add_argument("url", help="http(s)://..., tcp://HOST:PORT or dns://NAME")
    parser.add_argument("conditions", nargs="*", metavar="CONDITION", help=USAGE_CONDITIONS)
    parser.add_argument("--timeout", "-t", default="10", help="deadline (seconds or 5s, 500ms)")
    parser.add_argument("--method", "-X", default="GET", help="HTTP method")
    parser.add_argument(
        "--header", "-H", action="append", default=[], metavar="'NAME: VALUE'", help="header"
    )
    parser.add_argument("--data", "-d", help="request body")
    parser.add_argument("--no-follow", action="store_true", help="do not follow redirects")
    parser.add_argument("--insecure", "-k", action="store_true", help="skip TLS verification")
    parser.add_argument("--ca-file", help="PEM file of the CAs to trust")
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ip_family", action="store_const", const="ip4")
    family.add_argument("-6", dest="ip_family", action="store_const", const="ip6")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=cmd_probe, ip_family="auto")


def endpoint_data(args: argparse.Namespace) -> dict[str, Any]:
    """The command line as an endpoint table (validated by the same model as the config)."""
    conditions: dict[str, Any] = {}
    for text in args.conditions:
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"condition {text!r} is not FIELD=VALUE")
        if key.startswith("json."):
            conditions.setdefault("json_path", {})[key[5:]] = _scalar(value)
        elif key.startswith("header."):
            conditions.setdefault("headers", {})[key[7:]] = value
        elif key in ("status", "answers"):
            conditions[key] = [v for v in value.split(",") if v]
        else:
            conditions[key] = value
    headers = {}
    for line in args.header:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"header {line!r} is not 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    tls: dict[str, Any] = {"verify": not args.insecure}
    if args.ca_file:
        tls["ca_file"] = args.ca_file
    data: dict[str, Any] = {
        "url": args.url,
        "timeout": args.timeout,
        "interval": 86400,
        "method": args.method.upper(),
        "headers": headers,
        "follow_redirects": not args.no_follow,
        "ip_family": args.ip_family,
        "tls": tls,
        "conditions": conditions,
    }
    if args.data is not None:
        data["body"] = args.data
    return data


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_probe(args: argparse.Namespace) -> int:
    from pydantic import ValidationError  # noqa: PLC0415

    from daemon.cli.common import run_async  # noqa: PLC0415
    from daemon.config.probes import EndpointConfig  # noqa: PLC0415

    try:
        cfg = EndpointConfig.model_validate(endpoint_data(args))
    except (ValidationError, ValueError) as exc:
        for line in _errors(exc):
            print(f"awsd probe: {line}", file=sys.stderr)
        return 2
    return run_async(_probe_once(cfg, as_json=args.json))


async def _probe_once(cfg: Any, *, as_json: bool) -> int:
    from daemon.probes.prober import Prober  # noqa: PLC0415

    prober = Prober()
    try:
        result = await prober.check("cli", cfg)
    finally:
        await prober.close()
    print(json.dumps(result.to_dict(), indent=2) if as_json else render(result))
    return 0 if result.success else 1


def _errors(exc: Exception) -> list[str]:
    errors = getattr(exc, "errors", None)
    if errors is None:
        return [str(exc)]
    out = []
    for error in errors():
        loc = ".".join(str(p) for p in error["loc"])
        out.append(f"{loc or 'url'}: {error['msg'].removeprefix('Value error, ')}")
    return out


def render(r: Any) -> str:
    """The result for people: a headline, then one fact per line."""
    state = "UP" if r.success else f"DOWN ({r.reason})"
    lines = [f"{r.target}: {state}: {r.detail}"]

    def row(name: str, value: object) -> None:
        if value not in (None, ""):
            lines.append(f"  {name:<12} {value}")

    row("latency", f"{r.duration * 1000:.1f} ms")
    row("status", r.status)
    row("size", f"{r.size} bytes" if r.size is not None else None)
    row("redirects", r.redirects or None)
    row("address", r.address)
    p = r.phases
    row(
        "phases",
        f"dns {p.dns * 1000:.1f}ms  connect {p.connect * 1000:.1f}ms  tls {p.tls * 1000:.1f}ms  "
        f"first byte {p.first_byte * 1000:.1f}ms  transfer {p.transfer * 1000:.1f}ms",
    )
    row("tls", r.tls_version)
    row("certificate", _expiry(r.cert_expires_at))
    row("chain", _expiry(r.chain_expires_at))
    for i, check in enumerate(r.checks):
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"  {'checks' if i == 0 else '':<12} {mark} {check.name}: {check.detail}")
    return "\n".join(lines)


def _expiry(ts: float | None) -> str | None:
    if ts is None:
        return None
    when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))
    return f"expires {when} (in {(ts - time.time()) / 86400:.1f} days)"
