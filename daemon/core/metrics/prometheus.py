"""Prometheus: `GET /metrics` on the health server in the text exposition format (0.0.4).

A small writer rather than prometheus-client: the registry already holds everything the format
needs, and the writer is a page of code where the library would be a second registry to keep in
step (and memory a Raspberry Pi does not have to spare). Scrapes run the registry's collectors
first, so depths are current; the response is gzipped when the scraper accepts it, as Prometheus
does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from aiohttp import web

from daemon.core.http import Handler
from daemon.core.metrics.registry import Counter, Gauge, Histogram, Registry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(registry: Registry) -> str:
    """The whole registry in the text format (collectors are run first)."""
    registry.collect()
    lines: list[str] = []
    for family in registry.families():
        name = family.name
        lines.append(f"# HELP {name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {name} {family.kind}")
        names = family.labelnames
        for key, child in family.items():
            pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, key, strict=True)]
            if isinstance(child, Histogram):
                lines += _histogram(name, pairs, family.buckets, child)
            elif isinstance(child, Counter | Gauge):
                lines.append(f"{name}{_labels(pairs)} {_number(child.value)}")
    lines.append("")
    return "\n".join(lines)


def _histogram(name: str, pairs: list[str], bounds: tuple[float, ...], h: Histogram) -> list[str]:
    out = []
    cumulative = 0
    for bound, count in zip((*bounds, math.inf), h.buckets, strict=True):
        cumulative += count
        le = f'le="{_number(bound)}"'
        out.append(f"{name}_bucket{_labels([*pairs, le])} {cumulative}")
    out.append(f"{name}_sum{_labels(pairs)} {_number(h.sum)}")
    out.append(f"{name}_count{_labels(pairs)} {h.count}")
    return out


def _labels(pairs: list[str]) -> str:
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def handler(registry: Registry, enabled: Callable[[], bool]) -> Handler:
    """The aiohttp handler for `/metrics`; answers 404 while `metrics.prometheus.enabled` is
    false (the route stays, so a reload can turn it on)."""

    async def metrics(request: web.Request) -> web.Response:
        if not enabled():
            return web.Response(
                status=404, text="the Prometheus exporter is off (metrics.prometheus.enabled)\n"
            )
        response = web.Response(
            body=render(registry).encode(), headers={"Content-Type": CONTENT_TYPE}
        )
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    return metrics
