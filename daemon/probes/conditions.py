"""Conditions: what a response must satisfy, compiled once per endpoint, checked per result.

Checks run in a fixed order (status, headers, body, JSON paths, certificates, latency) and the
first failure gives the result its reason; every check still runs, so a person reading the result
(`awsd probe`, /status) sees all of them. Only the conditions a config sets are checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daemon.config.probes import ConditionsConfig
from daemon.probes.result import Check, Reason

DAY = 86400.0
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Response:
    """What the HTTP probe observed, for the conditions."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    duration: float
    cert_expires_at: float | None
    chain_expires_at: float | None
    now: float
    """Wall clock at the end of the check (certificate days are counted from it)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: Reason | None
    detail: str
    checks: tuple[Check, ...]


class StatusSet:
    """Accepted status codes from specs like `200`, `200-299`, `2xx`."""

    def __init__(self, specs: list[str]) -> None:
        self.specs = specs
        self.ranges: list[tuple[int, int]] = []
        for spec in specs:
            if spec.endswith("xx"):
                low = int(spec[0]) * 100
                self.ranges.append((low, low + 99))
            elif "-" in spec:
                a, b = spec.split("-")
                self.ranges.append((int(a), int(b)))
            else:
                self.ranges.append((int(spec), int(spec)))

    def __contains__(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.ranges)

    def __str__(self) -> str:
        return ",".join(self.specs)


class Conditions:
    """One endpoint's conditions, compiled."""

    def __init__(self, cfg: ConditionsConfig) -> None:
        self.cfg = cfg
        self.status = StatusSet(cfg.status)
        self.body_regex = re.compile(cfg.body_regex.encode()) if cfg.body_regex else None
        self.body_not_regex = (
            re.compile(cfg.body_not_regex.encode()) if cfg.body_not_regex else None
        )
        self.headers = {k.lower(): re.compile(v) for k, v in cfg.headers.items()}
        self.json_path = {path: (parse_path(path), v) for path, v in cfg.json_path.items()}

    def evaluate(self, r: Response) -> Verdict:
        checks: list[tuple[Reason, Check]] = []
        ok = r.status in self.status
        checks.append((Reason.STATUS, Check("status", ok, f"{r.status} (accepted: {self.status})")))
        checks += self._headers(r)
        checks += self._body(r)
        checks += self._json(r)
        checks += certificate_checks(self.cfg, r.cert_expires_at, r.chain_expires_at, r.now)
        if self.cfg.max_latency is not None:
            ok = r.duration <= self.cfg.max_latency
            detail = f"{r.duration * 1000:.0f}ms (max {self.cfg.max_latency * 1000:.0f}ms)"
            checks.append((Reason.LATENCY, Check("latency", ok, detail)))
        failed = next(((reason, c) for reason, c in checks if not c.ok), None)
        every = tuple(c for _, c in checks)
        if failed is None:
            return Verdict(None, "", every)
        reason, check = failed
        return Verdict(reason, f"{check.name}: {check.detail}", every)

    def _headers(self, r: Response) -> list[tuple[Reason, Check]]:
        out = []
        for name, pattern in self.headers.items():
            value = r.headers.get(name)
            if value is None:
                out.append((Reason.HEADER, Check(f"header {name}", False, "missing")))
            else:
                ok = pattern.search(value) is not None
                verb = "matches" if ok else "does not match"
                detail = f"{_short(value)!r} {verb} {pattern.pattern!r}"
                out.append((Reason.HEADER, Check(f"header {name}", ok, detail)))
        return out

    def _body(self, r: Response) -> list[tuple[Reason, Check]]:
        out = []
        if self.body_regex is not None:
            ok = self.body_regex.search(r.body) is not None
            verb = "contains" if ok else "does not contain"
            detail = f"{verb} {self.cfg.body_regex!r}"
            out.append((Reason.BODY, Check("body", ok, detail)))
        if self.body_not_regex is not None:
            found = self.body_not_regex.search(r.body)
            ok = found is None
            detail = (
                f"does not contain {self.cfg.body_not_regex!r}"
                if ok
                else f"contains {_short(found.group(0).decode(errors='replace'))!r}"
                if found
                else ""
            )
            out.append((Reason.BODY, Check("body not", ok, detail)))
        return out

    def _json(self, r: Response) -> list[tuple[Reason, Check]]:
        if not self.json_path:
            return []
        try:
            document = json.loads(r.body)
        except ValueError as exc:
            return [(Reason.JSON, Check("json", False, f"body is not JSON: {exc}"))]
        out = []
        for path, (tokens, expected) in self.json_path.items():
            found, value = lookup(document, tokens)
            if not found:
                out.append((Reason.JSON, Check(f"json {path}", False, "path not found")))
                continue
            ok = json_equal(value, expected)
            detail = f"{_short(json.dumps(value))} {'==' if ok else '!='} {json.dumps(expected)}"
            out.append((Reason.JSON, Check(f"json {path}", ok, detail)))
        return out


def certificate_checks(
    cfg: ConditionsConfig, leaf: float | None, chain: float | None, now: float
) -> list[tuple[Reason, Check]]:
    """The leaf and chain expiry conditions (only those set; only when TLS was used)."""
    out = []
    for name, days, expires in (
        ("certificate", cfg.cert_expiry_days, leaf),
        ("chain", cfg.chain_expiry_days, chain),
    ):
        if days is None:
            continue
        if expires is None:
            out.append((Reason.CERTIFICATE, Check(name, False, "no certificate (not TLS?)")))
            continue
        left = (expires - now) / DAY
        ok = left > days
        detail = f"expires in {left:.1f} days (needs more than {days:g})"
        out.append((Reason.CERTIFICATE, Check(name, ok, detail)))
    return out


def parse_path(path: str) -> list[str | int]:
    """`$.a.b[0].c` or `a.b[0].c` -> ['a', 'b', 0, 'c']."""
    text = path[2:] if path.startswith("$.") else path.removeprefix("$")
    tokens: list[str | int] = []
    for key, index in _PATH_TOKEN.findall(text):
        tokens.append(int(index) if index else key)
    return tokens


def lookup(document: Any, tokens: list[str | int]) -> tuple[bool, Any]:
    value = document
    for token in tokens:
        if isinstance(token, int):
            if not isinstance(value, list) or not -len(value) <= token < len(value):
                return False, None
            value = value[token]
        elif isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token == "length":
            value = len(value)
        else:
            return False, None
    return True, value


def json_equal(value: Any, expected: Any) -> bool:
    """Equality that forgives TOML/CLI types: `"200"` equals `200`, `"true"` equals `true`."""
    if type(value) is type(expected) or (
        isinstance(value, int | float)
        and isinstance(expected, int | float)
        and not isinstance(value, bool)
        and not isinstance(expected, bool)
    ):
        return bool(value == expected)
    return _text(value) == _text(expected)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
