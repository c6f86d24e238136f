"""Masking credentials wherever they could leak: log events, printed configs, error texts, URLs.

Two rules: a field whose *name* says secret, token, password, credential, private, auth, or
names a key that is a credential (`api_key`, `ssh_keyfile`; not `partition_key` or `kms_key_id`:
see `is_secret_name`) is masked whole, unless empty or a boolean; and in any text, things that
*look* like credentials are masked in place (AWS secret keys, session tokens, Authorization
header values, and URLs as `redact_url` shows them). An AWS access key id keeps its last four
characters (`***MPLE`), enough to tell which key was used, too few to use it.

`redact_url` is the one way a URL leaves the process (logs, /status, alerts published to SNS,
`check-config`, metric labels): the password of its userinfo and the values of query parameters
whose names look secret (`token`, `api_key`, `sig`, ...) or that `[log] redact_query` lists are
masked. The configured names are process-wide (`configure_redaction`, called whenever logging is
configured), since every output of the process must agree on them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
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

# Query parameter names that are credentials in URLs even though, as config field names, they
# would be data (`?key=` is an API key in a URL, an S3 object key in a config).
_QUERY_SECRETS = frozenset(
    {"key", "sig", "code", "auth", "pass", "pw", "pwd", "session", "sid", "jwt", "hmac"}
)
_query_keys: frozenset[str] = frozenset()

_URL = r"\b[a-zA-Z][\w+.-]*://[^\s\"'<>`]+"

_TEXT_PATTERNS = (
    # Authorization / X-Amz-Security-Token / aws_secret_access_key = value, and the signature
    # of a presigned URL (a bearer credential until it expires)
    r"(?P<hdr>(?i:authorization|x-amz-security-token|aws_secret_access_key|"
    r"aws_session_token|secret_access_key|session_token|x-amz-signature)[\"']?\s*[:=]\s*b?[\"']?)"
    r"(?P<hdrval>(?:(?i:bearer|basic|aws4-hmac-sha256)\s+)?[^\s\"',;]+(?:,\s*\S+=[^\s,\"']+)*)",
    # AWS access key ids, and whatever a SigV4 `Credential=` names as one
    r"(?P<akid>\b(?:AKIA|ASIA|AROA|AIDA|ABIA|ACCA)[A-Z0-9]{16}\b)",
    r"(?P<cred>(?i:credential)=)(?P<credval>[^/\s\"',;&]+)(?=/)",
    # STS session tokens start with these base64 prefixes
    r"(?P<sts>\b(?:IQoJb3JpZ2luX2|FwoGZXIvYXdzE|FQoGZXIvYXdzE)[A-Za-z0-9/+=]{20,})",
    # 40-character secret keys: mixed case and digits, nothing around them
    r"(?P<sak>(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+=]*[a-z])(?=[A-Za-z0-9/+=]*[A-Z])"
    r"(?=[A-Za-z0-9/+=]*[0-9])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=]))",
)
# scheme://user:password@host/path?query first, so a URL is redacted whole (see redact_url).
_PATTERNS = re.compile("|".join((rf"(?P<url>{_URL})", *_TEXT_PATTERNS)))
_NOT_URL = re.compile("|".join(_TEXT_PATTERNS))


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


def configure_redaction(query_keys: Iterable[str] = ()) -> None:
    """Also mask the values of these query parameters in every URL (`[log] redact_query`)."""
    global _query_keys  # noqa: PLW0603 - process-wide on purpose: every output must agree
    _query_keys = frozenset(k.lower() for k in query_keys)


def _secret_query_key(name: str) -> bool:
    lowered = name.lower()
    return lowered in _query_keys or lowered in _QUERY_SECRETS or is_secret_name(name)


def _keep_last4(value: str) -> str:
    return MASK + value[-4:] if len(value) > 8 else MASK


def _replace(match: re.Match[str]) -> str:
    found = match.groupdict()
    if found.get("url") is not None:
        return redact_url(found["url"])
    if found["hdr"] is not None:
        return found["hdr"] + MASK
    if found["akid"] is not None:
        return _keep_last4(found["akid"])
    if found["cred"] is not None:
        return found["cred"] + _keep_last4(found["credval"])
    return MASK


def redact_text(text: str) -> str:
    """Mask credential-looking substrings in free text (URLs as `redact_url` does)."""
    return _PATTERNS.sub(_replace, text)


_AUTHORITY = re.compile(r"^(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<userinfo>[^/?#@]*@)?")


def redact_url(url: str) -> str:
    """`url` with its userinfo password and its secret query values masked; other credential-
    looking text in it (a presigned URL's access key id) masked as `redact_text` does. Never
    raises: a malformed URL is redacted as text."""
    head = _AUTHORITY.match(url)
    if head is None:
        return _redact_plain(url)
    userinfo = head.group("userinfo")
    if userinfo:
        user, sep, _ = userinfo[:-1].partition(":")
        # A bare userinfo long enough to be a token (https://TOKEN@host) is masked too.
        if sep:
            userinfo = f"{user}:{MASK}@"
        elif len(user) >= 20:
            userinfo = f"{MASK}@"
    rest = url[head.end() :]
    path, qmark, query = rest.partition("?")
    fragment = ""
    if qmark:
        query, hashmark, frag = query.partition("#")
        fragment = hashmark + frag
        query = "&".join(_redact_pair(pair) for pair in query.split("&"))
    shown = f"{head.group('scheme')}{userinfo or ''}{path}{qmark}{query}{fragment}"
    return _redact_plain(shown)


def _redact_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if sep and value and _secret_query_key(_unquote(name)):
        return f"{name}={MASK}"
    return pair


def _unquote(text: str) -> str:
    from urllib.parse import unquote_plus  # noqa: PLC0415 - only when a query is seen

    return unquote_plus(text)


def _redact_plain(text: str) -> str:
    return _NOT_URL.sub(_replace, text)


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
