"""Config of the local ingest endpoint (`POST /publish`, `awsd publish`): who may write, where to.

Who may connect at all stays `sns.ingest` (loopback, any, off). This section says what a client
must show and where its messages may go: a bearer token read from `<state_dir>/ingest.token`
(0600, or 0640 for `group`), destinations limited to what the config declares plus `allow`,
browsers kept out (`origins`), and a per-client rate.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from daemon.base.fields import Arn, Host, Section

_PHONE_PATTERN = re.compile(r"^\+[1-9]\d{0,14}\*?$")
_ORIGIN = re.compile(r"^(https?)://[^/\s]+$|^null$")


def _check_allowed(value: str) -> str:
    if value.startswith("+"):
        if not _PHONE_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not an E.164 phone number (+14155550100) or a prefix of one "
                "ending in * (+4477*)"
            )
        return value
    if value.startswith("arn:"):
        if value.endswith("*"):
            parts = value.split(":", 5)
            if len(parts) < 3 or parts[2] not in ("sns", "kinesis"):
                raise ValueError(f"{value!r}: a pattern must start arn:PARTITION:sns: or :kinesis:")
            return value
        Arn.parse(value, "sns", "kinesis")
        return value
    raise ValueError(
        f"{value!r}: allow SNS topic ARNs, Kinesis stream ARNs and E.164 phone numbers (a "
        "trailing * matches a prefix); declared topics and streams are allowed already"
    )


def _check_origin(value: str) -> str:
    if not _ORIGIN.match(value):
        raise ValueError(f"{value!r} is not an origin (scheme://host[:port], no path)")
    return value


AllowedDestination = Annotated[str, AfterValidator(_check_allowed)]
Origin = Annotated[str, AfterValidator(_check_origin)]


class IngestConfig(Section):
    """What a client of the local ingest endpoint must show, and where its messages may go."""

    allow: list[AllowedDestination] = Field(default_factory=list, max_length=1000)
    """Destinations ingest may publish to besides the declared topics and streams
    (`[resources.topics]`, `[resources.streams]`), `sns.topic`, and the phone numbers probe
    alerts send to: SNS topic ARNs, Kinesis stream ARNs and E.164 phone numbers; a trailing `*`
    matches a prefix (`arn:aws:sns:eu-west-1:123456789012:team-*`, `+4477*`). Anything else is
    refused with 403."""

    origins: list[Origin] = Field(default_factory=list, max_length=100)
    """Browser origins (`http://localhost:3000`) whose requests are accepted. A request with
    any other `Origin` header (a web page in a browser on this machine) is refused."""

    hosts: list[Host] = Field(default_factory=list, max_length=100)
    """Host names the `Host` header may carry besides IP addresses and `localhost` (a name
    that resolves to this machine). Any other name is refused: DNS rebinding."""

    rate: float = Field(default=100.0, gt=0, le=100_000)
    """Messages per second one client address may publish, on average."""

    burst: int = Field(default=1000, ge=1, le=1_000_000)
    """Messages one client address may publish at once before `rate` applies (a request of
    more messages than this is refused: split it)."""

    group: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]{0,31}\$?$")
    """A group whose members may publish too: the token file is made 0640 with this group and
    the state directory 0710 (members may open the token, not list or read anything else). The
    daemon's user must belong to the group. Unset: only the daemon's user (and root) can."""
