"""Shared building blocks for configuration models.

Every section forbids unknown keys (a typo is an error, not a silently ignored setting), is
frozen (a loaded config is a value that can be compared and hashed for reloads) and takes field
descriptions from attribute docstrings, so `awsd schema` and docs/configuration-reference.md are
generated from the same text the code is read with.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints


class Section(BaseModel):
    """Base for every config section: strict about unknown keys, immutable, documented."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", strict=True)]
"""A worker, resource or endpoint name: letters, digits, `_`, `.`, `-`; at most 64 characters."""

_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, not {value!r}")
    return value.rstrip("/")


def _check_entrypoint(value: str) -> str:
    if not _ENTRYPOINT.match(value):
        raise ValueError(f"must look like 'package.module:function', not {value!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(_check_url)]
"""An http(s) URL kept as a plain string (botocore and aiohttp take strings)."""

Entrypoint = Annotated[str, AfterValidator(_check_entrypoint)]
"""A Python callable named as `package.module:function`."""
