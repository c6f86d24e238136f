"""Masking credentials wherever they could leak: log events, printed configs, error texts.

Two rules: a field whose *name* says secret, token, password, credential, authorization or key
is masked whole; and in any text, things that *look* like credentials are masked in place (AWS
access key ids and secret keys, session tokens, Authorization header values, passwords in URLs).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_SECRET_NAME = re.compile(
    r"secret|token|passw|pwd|credential|authorization|cookie|signature|key$", re.I
)
# Names that end in "key" but hold data, not credentials (an S3 object key, a partition key).
_DATA_KEYS = frozenset(
    {
        "key",
        "partition_key",
        "sort_key",
        "hash_key",
        "lease_key",
        "object_key",
        "s3_key",
        "routing_key",
        "dedup_key",
        "group_key",
        "idempotency_key",
        "partition_key_field",
    }
)

_PATTERNS = re.compile(
    "|".join(
        (
            # scheme://user:password@host
            r"(?P<url>\b[a-zA-Z][\w+.-]*://[^\s:/@]+:)(?P<urlpw>[^\s@/]+)(?=@)",
            # Authorization / X-Amz-Security-Token / aws_secret_access_key = value
            r"(?P<hdr>(?i:authorization|x-amz-security-token|aws_secret_access_key|"
            r"aws_session_token|secret_access_key|session_token)[\"']?\s*[:=]\s*[\"']?)"
            r"(?P<hdrval>(?:(?i:bearer|basic|aws4-hmac-sha256)\s+)?[^\s\"',;]+(?:,\s*\S+=[^\s,\"']+)*)",
            # AWS access key ids
            r"(?P<akid>\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b)",
            # STS session tokens start with these base64 prefixes
            r"(?P<sts>\b(?:IQoJb3JpZ2luX2|FwoGZXIvYXdzE|FQoGZXIvYXdzE)[A-Za-z0-9/+=]{20,})",
            # 40-character secret keys: mixed case and digits, nothing around them
            r"(?P<sak>(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+=]*[a-z])(?=[A-Za-z0-9/+=]*[A-Z])"
            r"(?=[A-Za-z0-9/+=]*[0-9])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=]))",
        )
    )
)


def is_secret_name(name: str) -> bool:
    """True when a field called `name` should never be shown."""
    lowered = name.lower()
    return lowered not in _DATA_KEYS and bool(_SECRET_NAME.search(lowered))


def _replace(match: re.Match[str]) -> str:
    if match.group("url") is not None:
        return match.group("url") + MASK
    if match.group("hdr") is not None:
        return match.group("hdr") + MASK
    return MASK


def redact_text(text: str) -> str:
    """Mask credential-looking substrings in free text."""
    return _PATTERNS.sub(_replace, text)


def redact(value: Any, depth: int = 0) -> Any:
    """Return a copy of `value` with secret-named fields and credential-looking text masked."""
    if isinstance(value, str):
        return redact_text(value) if len(value) >= 8 else value
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and is_secret_name(k) and v else redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    return value
