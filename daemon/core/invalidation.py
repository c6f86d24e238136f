"""CloudFront invalidations: the one way awsd tells a distribution to drop cached paths.

`awsd invalidate` and every worker that publishes behind a distribution (the status page) go
through `Invalidator.invalidate_on(distribution, paths)`; it takes the shared `AwsClients` and
`Targets` of `daemon.services.Services`, so a worker writes::

    invalidator = Invalidator(services.clients, services.targets)   # once: it caches ids
    done = await invalidator.invalidate_on("status", ["/index.html", "/history/*"],
                                           reference=content_hash)

- A distribution is named by a declared distribution's logical name (found by its
  CallerReference, `daemon.resources.distribution_config.find_distribution`, then cached), its id
  (`E2QWRUHEXAMPLE`) or its ARN.
- Paths start with `/`, are URL-encoded where CloudFront needs it, and deduplicated; no path
  means `/*`. CloudFront bills invalidations per path (a wildcard counts as one) and holds at
  most 3,000 paths and 15 wildcards in progress per distribution, so beyond those a request
  becomes `/*`: one path, everything refreshed.
- `reference` makes a retry idempotent: CloudFront returns the invalidation already made with
  that caller reference instead of making another. Give the version of what was published;
  without it every call invalidates anew.
- Throttling (TooManyInvalidationsInProgress, Throttling) is retried with the one backoff helper
  (`daemon.base.retry`); anything else raises, for the caller to report.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from daemon.base.awserrors import error_code, is_throttle
from daemon.base.retry import Backoff, retry
from daemon.resources.distribution_config import find_distribution

if TYPE_CHECKING:
    from daemon.core.aws import AwsClients
    from daemon.core.iam import Grant, Scope
    from daemon.core.targets import Targets

MAX_PATHS = 3000
MAX_WILDCARDS = 15
EVERYTHING = "/*"
BUSY_CODES = frozenset({"TooManyInvalidationsInProgress"})
BACKOFF = Backoff(initial=1.0, maximum=30.0)
ATTEMPTS = 6
_ID = re.compile(r"^E[A-Z0-9]{5,20}$|^[A-Z0-9]{13,14}$")


def grants(component: str, distributions: Sequence[str], scope: Scope) -> list[Grant]:
    """What `component` needs to invalidate on `distributions` (a worker's `grants` adds it):
    finding a declared one by its CallerReference, and making and reading invalidations. A
    distribution's id is assigned by AWS, so a declared one is granted as the account's
    distributions (`distribution/*`)."""
    from daemon.core.iam import Grant  # noqa: PLC0415

    if not distributions:
        return []
    arns = tuple(sorted({scope.arn_of("distributions", d) for d in distributions}))
    return [
        Grant(
            component,
            ("cloudfront:CreateInvalidation", "cloudfront:GetInvalidation",
             "cloudfront:GetDistributionConfig"),
            arns,
        ),
        Grant(component, ("cloudfront:ListDistributions",), ("*",)),
    ]  # fmt: skip


class DistributionNotFound(LookupError):
    """No distribution answers to that reference."""


@dataclass(frozen=True, slots=True)
class Invalidation:
    """An invalidation CloudFront accepted."""

    distribution_id: str
    id: str
    status: str
    """`InProgress` or `Completed`."""
    paths: tuple[str, ...]
    caller_reference: str

    def to_json(self) -> dict[str, Any]:
        return {
            "distribution_id": self.distribution_id,
            "id": self.id,
            "status": self.status,
            "paths": list(self.paths),
            "caller_reference": self.caller_reference,
        }


def normalise_paths(paths: Sequence[str]) -> list[str]:
    """The paths CloudFront is asked for (see the module docstring); ValueError for a path
    not starting with `/`."""
    cleaned: list[str] = []
    for path in paths or [EVERYTHING]:
        if not path.startswith("/"):
            raise ValueError(f"an invalidation path starts with '/': {path!r}")
        encoded = quote(path, safe="/*~!$&'()+,;=:@%")
        if encoded not in cleaned:
            cleaned.append(encoded)
    wildcards = sum(1 for p in cleaned if p.endswith("*"))
    if EVERYTHING in cleaned or len(cleaned) > MAX_PATHS or wildcards > MAX_WILDCARDS:
        return [EVERYTHING]
    return sorted(cleaned)


class Invalidator:
    """Invalidates paths on distributions, through the daemon's shared AWS clients."""

    def __init__(self, clients: AwsClients, targets: Targets) -> None:
        self.clients = clients
        self.targets = targets
        self._ids: dict[str, str] = {}

    async def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        client = await self.clients.client(service)
        response: dict[str, Any] = await getattr(client, operation)(**params)
        return response

    async def distribution_id(self, distribution: str) -> str:
        """The id of a distribution named by logical name, id or ARN."""
        if distribution.startswith("arn:"):
            return distribution.rsplit("/", 1)[-1]
        known = self._ids.get(distribution)
        if known is not None:
            return known
        declared = distribution in self.targets.config.resources.distributions
        if not declared and _ID.match(distribution):
            return distribution
        physical = await self.targets.aws_name("distributions", distribution)
        found = await find_distribution(self._call, physical)
        if found is None:
            raise DistributionNotFound(
                f"no CloudFront distribution {distribution!r} in this account"
                + (" (declared, but not created yet: run `awsd apply`)" if declared else "")
            )
        self._ids[distribution] = found["Id"]
        return str(found["Id"])

    async def invalidate_on(
        self, distribution: str, paths: Sequence[str] = (), *, reference: str | None = None
    ) -> Invalidation:
        """Ask CloudFront to drop `paths` (all of them by default) from `distribution`'s caches;
        returns once CloudFront accepted it (it completes within minutes: `status`)."""
        wanted = normalise_paths(paths)
        dist_id = await self.distribution_id(distribution)
        caller = reference or f"awsd-{uuid.uuid4().hex}"

        async def once() -> dict[str, Any]:
            return await self._call(
                "cloudfront",
                "create_invalidation",
                DistributionId=dist_id,
                InvalidationBatch={
                    "Paths": {"Quantity": len(wanted), "Items": wanted},
                    "CallerReference": caller,
                },
            )

        got = await retry(
            once,
            retry_if=lambda e: is_throttle(e) or error_code(e) in BUSY_CODES,
            backoff=BACKOFF,
            attempts=ATTEMPTS,
        )
        made = got["Invalidation"]
        return Invalidation(
            distribution_id=dist_id,
            id=made["Id"],
            status=made.get("Status", "InProgress"),
            paths=tuple(made.get("InvalidationBatch", {}).get("Paths", {}).get("Items", wanted)),
            caller_reference=caller,
        )

    async def status(self, distribution_id: str, invalidation_id: str) -> str:
        """An invalidation's status now (`InProgress`, `Completed`)."""
        got = await self._call(
            "cloudfront", "get_invalidation", DistributionId=distribution_id, Id=invalidation_id
        )
        return str(got["Invalidation"].get("Status", ""))
