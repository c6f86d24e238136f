"""`awsd probe URL [CONDITION ...]`: one check, the full result, exit 0 (up) or 1 (down).

A plain uptime check answers with `requests.get(url).elapsed`; this answers with what the probe
engine sees: success and the failure reason, per-phase timings, status, size, TLS
version and certificate expiry, and every condition checked.

Conditions are the config's own keys under `conditions`, written `KEY=VALUE` with TOML's dotted
keys for tables: `status=2xx,301 max_latency=500ms body_regex=ok json_path.status=UP
headers.content-type=json cert_expiry_days=14` (`json.` and `header.` are short for
`json_path.` and `headers.`). `--print-config [NAME]` prints, on stdout, the exact
`[probes.endpoints.NAME]` table for the probe just run (the result goes to stderr), so what
was tried here is what the daemon will check: `awsd probe URL ... --print-config >> my.toml`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any
from urllib.parse import urlsplit

USAGE_CONDITIONS = (
    "conditions, as the config's KEY=VALUE: status=2xx,301-302  max_latency=500ms  "
    "body_regex=RE  body_not_regex=RE  json_path.PATH=VALUE (or json.PATH)  "
    "headers.NAME=RE (or header.NAME)  cert_expiry_days=N  chain_expiry_days=N  "
    "answers=ADDR,ADDR (dns)"
)
_TABLES = {
    "json_path.": "json_path",
    "json.": "json_path",
    "headers.": "headers",
    "header.": "headers",
}
"""Dotted keys into the conditions' tables: the config's names, and their short forms."""
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "probe",
        help="probe a URL once and print the full result (exit 0 up, 1 down)",
        description="Probe http(s)://, tcp://HOST:PORT or dns://NAME once. " + USAGE_CONDITIONS,
    )
    parser.add_argument("url", help="http(s)://..., tcp://HOST:PORT or dns://NAME")
    parser.add_argument("conditions", nargs="*", metavar="CONDITION", help=USAGE_CONDITIONS)
    parser.add_argument(
        "--timeout", "-t", help="deadline (seconds or 5s, 500ms; default 10)", default=None
    )
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
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the result as JSON")
    output.add_argument(
        "--print-config",
        nargs="?",
        const="",
        metavar="NAME",
        help="print the [probes.endpoints.NAME] table for this probe on stdout (the result on "
        "stderr); NAME defaults to the host's",
    )
    parser.set_defaults(func=cmd_probe, ip_family="auto")


def endpoint_data(args: argparse.Namespace) -> dict[str, Any]:
    """The command line as an endpoint table (validated by the same model as the config)."""
    conditions = parse_conditions(args.conditions)
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
        "timeout": args.timeout or "10",
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


def parse_conditions(texts: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` words as the config's `conditions` table (dotted keys into its tables)."""
    conditions: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"condition {text!r} is not KEY=VALUE")
        table = next((t for prefix, t in _TABLES.items() if key.startswith(prefix)), None)
        if table is not None:
            inner = key.split(".", 1)[1]
            conditions.setdefault(table, {})[inner] = (
                _scalar(value) if table == "json_path" else value
            )
        elif key in ("status", "answers"):
            conditions[key] = [v for v in value.split(",") if v]
        else:
            conditions[key] = value
    return conditions


def config_table(args: argparse.Namespace, data: dict[str, Any]) -> str:
    """The `[probes.endpoints.NAME]` table for the probe the command line describes: what
    differs from the defaults, written as given (`500ms` stays `500ms`)."""
    name = args.print_config or _name_for(args.url)
    table: dict[str, Any] = {"url": data["url"]}
    if args.timeout is not None:
        table["timeout"] = _scalar(args.timeout) if args.timeout.isdigit() else args.timeout
    if data["method"] != "GET":
        table["method"] = data["method"]
    for key, default in (("headers", {}), ("follow_redirects", True), ("ip_family", "auto")):
        if data[key] != default:
            table[key] = data[key]
    if "body" in data:
        table["body"] = data["body"]
    if data["tls"] != {"verify": True}:
        table["tls"] = data["tls"]
    key = f"probes.endpoints.{_toml_key(name)}"
    lines = [f"[{key}]", *(f"{_toml_key(k)} = {_toml(v)}" for k, v in table.items())]
    if data["conditions"]:
        lines += ["", f"[{key}.conditions]"]
        lines += [f"{_toml_key(k)} = {_toml(v)}" for k, v in data["conditions"].items()]
    return "\n".join(lines)


def _name_for(url: str) -> str:
    host = urlsplit(url).hostname or "endpoint"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", host).strip("-")[:64] or "endpoint"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml(value: Any) -> str:
    """A value as TOML (JSON's string escapes are TOML's; tables go inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str) or value is None:
        return json.dumps(value if value is not None else "", ensure_ascii=False)
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


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
        data = endpoint_data(args)
        cfg = EndpointConfig.model_validate(data)
    except (ValidationError, ValueError) as exc:
        for line in _errors(exc):
            print(f"awsd probe: {line}", file=sys.stderr)
        return 2
    code = run_async(_probe_once(cfg, as_json=args.json, to_stderr=args.print_config is not None))
    if args.print_config is not None:
        print(config_table(args, data))
    return code


async def _probe_once(cfg: Any, *, as_json: bool, to_stderr: bool = False) -> int:
    from daemon.probes.prober import Prober  # noqa: PLC0415

    prober = Prober()
    try:
        result = await prober.check("cli", cfg)
    finally:
        await prober.close()
    text = json.dumps(result.to_dict(), indent=2) if as_json else render(result)
    print(text, file=sys.stderr if to_stderr else sys.stdout)
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
