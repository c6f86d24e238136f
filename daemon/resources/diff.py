"""Comparing declared state with what AWS reports: normalise first, then compare declared fields.

Both sides arrive in the config's vocabulary (`visibility_timeout`, not `VisibilityTimeout`) as
plain values; the adapters convert AWS's strings to numbers and booleans. The diff then:

- compares only the keys present on the declared side: what the file does not say is not drift;
- compares `Entries` (tags, subscriptions) entry by entry, so extra tags or subscriptions someone
  else added are left alone, and a change shows the one entry that differs;
- compares everything else as a whole after canonicalisation: JSON policies parsed, keys sorted,
  one-element arrays collapsed to their element (AWS rewrites `["x"]` as `"x"` and back), and
  arrays treated as sets (statement and action order carry no meaning in IAM or filter policies);
- skips the `ignore` paths of the resource.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class Entries(dict[str, Any]):
    """A mapping compared entry by entry, ignoring entries only the AWS side has."""


class Required(Entries):
    """An entry that must exist (a subscription): missing, it is one change as a whole;
    present, its attributes are compared one by one."""


@dataclass(frozen=True, slots=True)
class Change:
    """One attribute that differs: where, what the config says, what AWS has (None: absent)."""

    path: str
    expected: Any
    actual: Any


def canonical(value: Any) -> Any:
    """A comparison form: JSON text parsed, dict keys sorted, arrays as sorted sets, one-element
    arrays collapsed, integral floats as ints."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "["):
            try:
                return canonical(json.loads(stripped))
            except json.JSONDecodeError:
                return value
        return value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [canonical(v) for v in value]
        unique = {json.dumps(i, sort_keys=True, default=str): i for i in items}
        ordered = [unique[k] for k in sorted(unique)]
        return ordered[0] if len(ordered) == 1 else ordered
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def equal(expected: Any, actual: Any) -> bool:
    return bool(canonical(expected) == canonical(actual))


def join(path: str, key: str) -> str:
    if not path:
        return key
    if any(c in key for c in ".[]: /") or not key:
        return f"{path}[{key}]"
    return f"{path}.{key}"


def is_ignored(path: str, ignore: Iterable[str]) -> bool:
    for pattern in ignore:
        if path == pattern or path.startswith((pattern + ".", pattern + "[")):
            return True
    return False


def diff(
    expected: Mapping[str, Any], actual: Mapping[str, Any] | None, *, ignore: Iterable[str] = ()
) -> list[Change]:
    """The declared attributes whose actual value differs, depth-first in declaration order."""
    ignore = tuple(ignore)
    changes: list[Change] = []
    _walk(expected, actual or {}, "", ignore, changes)
    return changes


def _walk(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    path: str,
    ignore: tuple[str, ...],
    out: list[Change],
) -> None:
    for key, want in expected.items():
        here = join(path, key)
        if is_ignored(here, ignore):
            continue
        have = actual.get(key)
        if isinstance(want, Required) and have is None:
            out.append(Change(here, want, None))
        elif isinstance(want, Entries):
            _walk(want, have if isinstance(have, Mapping) else {}, here, ignore, out)
        elif not equal(want, have):
            out.append(Change(here, want, have))


def top_level(path: str) -> str:
    """`subscriptions[sqs:x].raw_delivery` -> `subscriptions`."""
    for i, c in enumerate(path):
        if c in ".[":
            return path[:i]
    return path


def plain(value: Any) -> Any:
    """A JSON-ready copy (Entries become dicts, tuples lists)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
