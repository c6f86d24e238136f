"""Shared building blocks for configuration models, and the one set of value types every field
that takes a host, a URL, an ARN, a phone number or a state path uses.

Every section forbids unknown keys (a typo is an error, not a silently ignored setting), is
frozen (a loaded config is a value that can be compared and hashed for reloads) and takes field
descriptions from attribute docstrings, so `awsd schema` and docs/configuration-reference.md are
generated from the same text the code is read with.
"""

from __future__ import annotations

import ipaddress
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from daemon.base.files import under_pseudo_filesystem


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


def _check_entrypoint(value: str) -> str:
    if not _ENTRYPOINT.match(value):
        raise ValueError(f"must look like 'package.module:function', not {value!r}")
    return value


Entrypoint = Annotated[str, AfterValidator(_check_entrypoint)]
"""A Python callable named as `package.module:function`."""


# --- hosts and URLs ---------------------------------------------------------------------------

# Labels of letters, digits, `-` and `_`, at most 63 each: what a resolver could be asked for
# (position rules are left to the resolver, which refuses such names itself, locally).
_LABEL = r"[A-Za-z0-9_-]{1,63}"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?$")
_NUMERIC = re.compile(r"^[0-9.]+$")


def host_problem(value: str) -> str | None:
    """Why `value` is neither an IP address nor a host name (RFC 1123 labels), or None."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return None
    if _NUMERIC.match(value):
        return f"{value!r} is not a valid IPv4 address"
    if not _HOSTNAME.match(value):
        return f"{value!r} is not a valid host name or IP address"
    return None


def _check_host(value: str) -> str:
    problem = host_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Host = Annotated[str, AfterValidator(_check_host)]
"""An IP address or a host name (letters, digits, `-` and `_` in dot-separated labels)."""


def url_problem(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """Why `value` is not a URL of one of `schemes` with a valid host (and port), or None."""
    if any(c.isspace() for c in value):
        return f"{value!r} contains white space"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"{value!r} is not a valid URL ({exc})"
    if parts.scheme not in schemes:
        wanted = " or ".join(f"{s}://" for s in schemes)
        return f"must be a {wanted} URL, not {value!r}"
    host = parts.hostname
    if not host:
        return f"{value!r} has no host"
    problem = host_problem(host)
    if problem:
        return f"{value!r}: {problem}"
    if port == 0:
        return f"{value!r}: port 0 is not a port one can connect to"
    return None


def _check_url(value: str) -> str:
    problem = url_problem(value)
    if problem:
        raise ValueError(problem)
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_check_url)]
"""An http(s) URL with a valid host, kept as a plain string (botocore and aiohttp take
strings)."""


_QUEUE_PATH = re.compile(r"^/(\d{12})/([A-Za-z0-9_-]{1,80}(?:\.fifo)?)/?$")


def queue_url_problem(value: str) -> str | None:
    """Why `value` is not an SQS queue URL (`https://HOST/ACCOUNT/NAME`), or None."""
    problem = url_problem(value)
    if problem:
        return problem
    if not _QUEUE_PATH.match(urlsplit(value).path):
        return f"{value!r} is not a queue URL (https://HOST/<12-digit account>/<queue name>)"
    return None


# --- ARNs ---------------------------------------------------------------------------------------

PARTITIONS = frozenset(
    {"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"}
)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ACCOUNT = re.compile(r"^\d{12}$")


@dataclass(frozen=True, slots=True)
class ArnRule:
    """What an ARN of one service looks like."""

    resource: re.Pattern[str]
    example: str
    regional: bool = True
    """Has a region and an account (S3 bucket ARNs have neither)."""


ARN_RULES: dict[str, ArnRule] = {
    "sns": ArnRule(
        re.compile(r"^[A-Za-z0-9_-]{1,256}(\.fifo)?$"),
        "arn:aws:sns:eu-west-1:123456789012:alerts",
    ),
    "sqs": ArnRule(
        re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$"),
        "arn:aws:sqs:eu-west-1:123456789012:orders",
    ),
    "kinesis": ArnRule(
        re.compile(r"^stream/[A-Za-z0-9_.-]{1,128}$"),
        "arn:aws:kinesis:eu-west-1:123456789012:stream/readings",
    ),
    "dynamodb": ArnRule(
        re.compile(r"^table/[A-Za-z0-9_.-]{3,255}$"),
        "arn:aws:dynamodb:eu-west-1:123456789012:table/leases",
    ),
    "s3": ArnRule(
        re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"),
        "arn:aws:s3:::my-bucket",
        regional=False,
    ),
    "lambda": ArnRule(
        re.compile(r"^function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]{1,128})?$"),
        "arn:aws:lambda:eu-west-1:123456789012:function:handler",
    ),
    "firehose": ArnRule(
        re.compile(r"^deliverystream/[A-Za-z0-9_.-]{1,64}$"),
        "arn:aws:firehose:eu-west-1:123456789012:deliverystream/archive",
    ),
    "kms": ArnRule(
        re.compile(r"^(key/[A-Za-z0-9-]{1,128}|alias/[A-Za-z0-9/_-]{1,250})$"),
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ),
}
"""The services whose ARNs a config names, and their shapes."""


@dataclass(frozen=True, slots=True)
class Arn:
    """A parsed ARN: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    @classmethod
    def parse(cls, text: str, *services: str) -> Arn:
        """Parse and check `text` (against the rule of its service, and for being one of
        `services` when given); ValueError saying what is wrong otherwise."""
        parts = text.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn":
            raise ValueError(
                f"{text!r} is not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)"
            )
        arn = cls(*parts[1:])
        if arn.partition not in PARTITIONS:
            raise ValueError(f"{text!r}: unknown partition {arn.partition!r} (aws, aws-cn, ...)")
        if services and arn.service not in services:
            wanted = " or ".join(services)
            raise ValueError(f"{text!r} is not an ARN of {wanted} (it names {arn.service!r})")
        rule = ARN_RULES.get(arn.service)
        if not arn.service or not arn.resource:
            raise ValueError(f"{text!r}: an ARN needs a service and a resource")
        regional = rule.regional if rule else bool(arn.region or arn.account)
        if regional:
            if not _REGION.match(arn.region):
                raise ValueError(f"{text!r}: {arn.region!r} is not a region (like eu-west-1)")
            if not _ACCOUNT.match(arn.account):
                raise ValueError(f"{text!r}: the account must be 12 digits, not {arn.account!r}")
        elif rule is not None and (arn.region or arn.account):
            raise ValueError(f"{text!r}: {arn.service} ARNs have no region or account")
        if rule is not None and not rule.resource.match(arn.resource):
            raise ValueError(
                f"{text!r}: {arn.resource!r} is not a {arn.service} resource (like {rule.example})"
            )
        return arn


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,255}$")


def _reference(what: str, service: str | None, *, urls: bool = False) -> AfterValidator:
    """A validator for a field that names a resource: a declared logical name (checked to be
    declared by the reference checks), an AWS name, or an ARN of `service` (any service: None),
    or a queue URL."""
    other = f"its {service or ''} ARN".replace("  ", " ") + (" or queue URL" if urls else "")

    def check(value: str) -> str:
        if value.startswith("arn:"):
            Arn.parse(value, *((service,) if service else ()))
        elif "://" in value:
            if not urls:
                raise ValueError(f"must be a {what}'s name or {other}, not a URL ({value!r})")
            problem = queue_url_problem(value)
            if problem:
                raise ValueError(problem)
        elif not _PLAIN_NAME.match(value):
            raise ValueError(f"must be a {what}'s logical name or {other}, not {value!r}")
        return value

    return AfterValidator(check)


TopicRef = Annotated[str, _reference("topic", "sns")]
"""A topic: a declared topic's logical name, or an SNS topic ARN."""
QueueRef = Annotated[str, _reference("queue", "sqs", urls=True)]
"""A queue: a declared queue's logical name, an SQS queue ARN, or a queue URL."""
StreamRef = Annotated[str, _reference("stream", "kinesis")]
"""A Kinesis stream: a declared stream's logical name, or a stream ARN."""
BucketRef = Annotated[str, _reference("bucket", "s3")]
"""An S3 bucket: a declared bucket's logical name, a bucket name, or a bucket ARN."""
TableRef = Annotated[str, _reference("table", "dynamodb")]
"""A DynamoDB table: a declared table's logical name, a table name, or a table ARN."""
ActionRef = Annotated[str, _reference("topic", None)]
"""An alarm action: a declared topic's logical name, or an ARN (a topic, an EC2 or Auto
Scaling action)."""


def _check_kms_key(value: str) -> str:
    if value.startswith("arn:"):
        Arn.parse(value, "kms")
    elif not re.match(r"^(alias/[A-Za-z0-9/_-]{1,250}|[A-Za-z0-9-]{1,128})$", value):
        raise ValueError(f"must be a KMS key id, alias/NAME or key ARN, not {value!r}")
    return value


KmsKeyRef = Annotated[str, AfterValidator(_check_kms_key)]
"""A KMS key: its id, `alias/NAME`, or its ARN."""

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _check_phone(value: str) -> str:
    if not _E164.match(value):
        raise ValueError(f"{value!r} is not an E.164 phone number (like +14155550100)")
    return value


PhoneNumber = Annotated[str, AfterValidator(_check_phone)]
"""A phone number in E.164 form: `+`, the country code, the number (`+14155550100`)."""


# --- state paths --------------------------------------------------------------------------------


def _kind(path: Path) -> str | None:
    """`dir`, `file`, `other`, or None when it does not exist or cannot be looked at (another
    user's directory: the daemon, running as its own user, will tell)."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def _check_state_path(value: str) -> Path:
    root = under_pseudo_filesystem(value)
    if root is not None:
        raise ValueError(f"{value!r} is under {root}, a kernel file system, not storage")
    path = Path(value)
    for parent in path.parents:
        if _kind(parent) not in (None, "dir"):
            raise ValueError(f"{value!r}: {parent} is not a directory")
    return path


def _check_state_dir(value: str) -> str:
    if _kind(_check_state_path(value)) not in (None, "dir"):
        raise ValueError(f"{value!r} exists and is not a directory")
    return value


def _check_state_file(value: str) -> str:
    if value == ":memory:":
        return value
    kind = _kind(_check_state_path(value))
    if kind == "dir":
        raise ValueError(f"{value!r} is a directory; name a file (or leave it unset)")
    if kind == "other":
        raise ValueError(f"{value!r} exists and is not a regular file")
    return value


StateDir = Annotated[str, AfterValidator(_check_state_dir)]
"""A directory for durable state: not a file, not under /proc, /sys or /dev."""

StateFile = Annotated[str, AfterValidator(_check_state_file)]
"""A file for durable state (or `:memory:`): not a directory, not under /proc, /sys or /dev."""
