"""Loading user code named as `package.module:function` (custom workers, python handlers), and
what a custom worker declares about the destinations it sends to (`sends_to`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def load_callable(spec: str) -> Callable[..., Any]:
    """Import `package.module:attr.path` and return the callable, or raise ValueError saying why."""
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import-time failure of user code is reported
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attr_path!r}") from None
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    return target  # type: ignore[no-any-return]


DESTINATIONS_ATTRIBUTE = "awsd_sends_to"
OUTBOX_KINDS = ("sns", "sqs", "kinesis")


def sends_to(**options: str) -> Callable[[F], F]:
    """Declare what a custom worker sends through the outbox: which of its options names a
    destination, of which outbox kind (`sns`, `sqs`, `kinesis`)::

        @sends_to(stream="kinesis")
        async def produce(ctx, options): ...

    `check-config` then checks that `options.stream` names a declared stream (or is an ARN),
    the reconciler knows the worker uses it, and `awsd iam-policy` grants what putting records on
    it needs. Resolve the option at run time with `ctx.services.targets.aws_name`.
    """
    unknown = sorted(set(options.values()) - set(OUTBOX_KINDS))
    if unknown:
        raise ValueError(f"unknown outbox kind {unknown[0]!r}; known: {', '.join(OUTBOX_KINDS)}")

    def mark(function: F) -> F:
        setattr(function, DESTINATIONS_ATTRIBUTE, dict(options))
        return function

    return mark


def declared_destinations(entrypoint: str, options: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(option name, outbox kind, value) for each destination a custom worker's entrypoint
    declares with `sends_to` and its options set; nothing when the entrypoint cannot be
    imported (`check-config` reports that on its own)."""
    try:
        function = load_callable(entrypoint)
    except ValueError:
        return []
    declared: dict[str, str] = getattr(function, DESTINATIONS_ATTRIBUTE, {})
    return [
        (option, kind, str(options[option]))
        for option, kind in declared.items()
        if isinstance(options.get(option), str) and options[option]
    ]
