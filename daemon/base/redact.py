"""Masking credentials wherever they could leak: log events, printed configs, error texts.

Two rules: a field whose *name* says secret, token, password, credential, private, auth, or
names a key that is a credential (`api_key`, `ssh_keyfile`; not `partition_key` or `kms_key_id`:
see `is_secret_name`) is masked whole, unless empty or a boolean; and in any text, things that
*look* like credentials are masked in place (AWS access key ids and secret keys, session tokens,
Authorization header values, passwords in URLs).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from typing import Any

MASK = "***"

# Anywhere in a name (lowercased, words joined by "_"): these always mean "do not show".
_SECRET_NAME = re.compile(
    r"secret|token|passw|passphrase|pwd|credential|private|authorization|cookie|bearer|apikey"
    r"|signature(?!_(?:version|algorithm|method|type)$)"
)
# A "key" word is a credential (`api_key`, `client_key`, `ssh_key_path`) unless the word before
# it names what the key indexes (`partition_key`, an S3 `bucket_key`), or the word after it says
# it is about the key, not the key itself (`kms_key_id`, `partition_key_type`). A bare `key` is
# data (an S3 object key, a dedup or sort key).
_DATA_KEY_BEFORE = frozenset(
    {
        "partition", "sort", "hash", "range", "lease", "object", "s3", "bucket", "routing",
        "dedup", "dedupe", "deduplication", "group", "idempotency", "primary", "foreign",
        "cache", "shard", "message", "order", "ordering", "sequence", "index", "lookup",
        "row", "record", "composite", "attribute", "field", "metric", "label", "dimension",
    }
)  # fmt: skip
_DATA_KEY_AFTER = frozenset(
    {
        "id", "ids", "arn", "arns", "alias", "type", "field", "fields", "name", "names",
        "prefix", "prefixes", "suffix", "pattern", "template", "count", "length", "size",
        "schema", "column", "expression", "format", "spec", "usage", "rotation", "state",
        "enabled", "range", "ranges", "chars", "bytes", "len", "policy",
    }
)  # fmt: skip
# Words that contain "key" but are not keys.
_NOT_KEYS = frozenset(
    {
        "keyword", "keywords", "keyed", "keyspace", "keystroke", "keystrokes", "keyboard",
        "hotkey", "hotkeys", "monkey", "donkey", "turkey", "jockey", "hockey", "whiskey",
    }
)  # fmt: skip
_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|[^A-Za-z0-9]+")

_PATTERNS = re.compile(
    "|".join(
        (
            # scheme://user:password@host
            r"(?P<url>\b[a-zA-Z][\w+.-]*://[^\s:/@]+:)(?P<urlpw>[^\s@/]+)(?=@)",
            # Authorization / X-Amz-Security-Token / aws_secret_access_key = value, and the
            # signature of a presigned URL (a bearer credential until it expires)
            r"(?P<hdr>(?i:authorization|x-amz-security-token|aws_secret_access_key|"
            r"aws_session_token|secret_access_key|session_token|x-amz-signature)[\"']?\s*[:=]\s*[\"']?)"
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


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """True when a field called `name` should never be shown. Unknown names that say secret,
    token, password, credential or private are masked: a false alarm costs a `***` in a log
    line, a miss leaks a credential."""
    words = [w for w in _WORD_BREAK.split(name.lower() if name.isupper() else name) if w]
    words = [w.lower() for w in words]
    if "auth" in words or _SECRET_NAME.search("_".join(words)):
        return True
    for i, word in enumerate(words):
        if "key" not in word or word in _NOT_KEYS:
            continue
        if word not in ("key", "keys"):
            return True  # keyfile, keypair, privkey, hmackey
        before = words[i - 1] if i else None
        after = words[i + 1] if i + 1 < len(words) else None
        if after is not None:
            if after not in _DATA_KEY_AFTER:
                return True  # key_file, key_path, key_pem, key_material
        elif before is not None and before not in _DATA_KEY_BEFORE:
            return True  # api_key, access_key, client_key, signing_key
    return False


def _replace(match: re.Match[str]) -> str:
    if match.group("url") is not None:
        return match.group("url") + MASK
    if match.group("hdr") is not None:
        return match.group("hdr") + MASK
    return MASK


def redact_text(text: str) -> str:
    """Mask credential-looking substrings in free text."""
    return _PATTERNS.sub(_replace, text)


def _masked(name: object, value: Any) -> bool:
    # Empty values and booleans (`pass_aws_credentials = true`) tell nothing: shown as they are.
    return (
        bool(value)
        and not isinstance(value, bool)
        and isinstance(name, str)
        and is_secret_name(name)
    )


def redact(value: Any, depth: int = 0) -> Any:
    """Return a copy of `value` with secret-named fields and credential-looking text masked."""
    if isinstance(value, str):
        return redact_text(value) if len(value) >= 8 else value
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {k: (MASK if _masked(k, v) else redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    return value


_MASK_KEY = secrets.token_bytes(16)


class Masked:
    """A secret inside compared state (a function's secret environment variable): equal to
    another by content, shown as `***:` and four hex digits wherever it is printed, logged or
    dumped. The digits come from a keyed hash whose key is random per process: within one plan
    two different values show different digits (so a changed secret shows as changed), and
    nothing outside the process can test a guess against them."""

    __slots__ = ("_digest", "_shown")

    def __init__(self, value: str) -> None:
        self._digest = hashlib.sha256(value.encode()).digest()
        self._shown = f"{MASK}:{hmac.new(_MASK_KEY, value.encode(), 'sha256').hexdigest()[:4]}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Masked) and other._digest == self._digest

    def __hash__(self) -> int:
        return hash(self._digest)

    def __repr__(self) -> str:
        return self._shown

    __str__ = __repr__
