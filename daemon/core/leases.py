"""Leases in a DynamoDB table, the way the Kinesis Client Library keeps them.

One item per lease: `lease_key`, `lease_owner` (absent when free), `lease_counter` and the user's
own attributes (a shard checkpoint, parent shard ids). Every change is a conditional write, so two
daemons can never both believe they hold a lease:
- renew: the owner increments the counter, on condition that owner and counter are as it last saw;
- take (or steal): anyone sets itself as owner and increments the counter, on condition that the
  counter is still the one it observed;
- update (a checkpoint): only on condition that it still owns the lease, so a daemon that lost a
  lease can never write its checkpoint;
- hand-off: anyone may ask the owner to hand a lease over (`request_handoff`, conditional on the
  owner it saw and on no other request pending); the owner sees the request in the answer to its
  next renewal or update (both return the item) and, once it has stopped using the lease, makes
  the requester the owner (`hand_over`). A take or a release clears a pending request.
Expiry is judged without comparing clocks across hosts: a lease is expired when its counter has
not changed for `failover_time` seconds of *this* process's monotonic time (`ExpiryTracker`).
`LeaderLease` builds single-holder leadership on it (the reconciler's one enforcer per fleet).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from daemon.base.awserrors import error_code
from daemon.core.aws import AwsClients
from daemon.core.logs import get_logger

log = get_logger()

KEY, OWNER, COUNTER = "lease_key", "lease_owner", "lease_counter"
HANDOFF = "lease_handoff_to"
_RESERVED = {KEY, OWNER, COUNTER, HANDOFF}
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def default_owner() -> str:
    """A worker id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Lease:
    key: str
    owner: str | None
    counter: int
    attrs: dict[str, Any] = field(default_factory=dict)
    handoff: str | None = None
    """The worker the owner was asked to hand the lease over to, if any."""


class LeaseTable:
    """Conditional operations on one lease table, on behalf of one owner."""

    def __init__(
        self, clients: AwsClients, table: str, owner: str, *, tags: dict[str, str] | None = None
    ) -> None:
        self.clients = clients
        self.table = table
        self.owner = owner
        self.tags = tags or {}

    async def _db(self) -> Any:
        return await self.clients.client("dynamodb")

    async def ensure_table(self, *, timeout: float = 60.0, create: bool = True) -> None:
        """Create the table if missing (on-demand billing) and wait until it is active. With
        `create=False` (a table somebody else creates: the reconciler, another team) a missing
        table raises `LookupError`, for the caller to retry later."""
        db = await self._db()
        try:
            status = (await db.describe_table(TableName=self.table))["Table"]["TableStatus"]
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            if not create:
                raise LookupError(f"lease table {self.table} does not exist (yet)") from exc
            status = await self._create(db)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while status != "ACTIVE":
            if loop.time() > give_up:
                raise TimeoutError(f"lease table {self.table} not active after {timeout}s")
            await asyncio.sleep(1.0)
            status = (await db.describe_table(TableName=self.table))["Table"]["TableStatus"]

    async def _create(self, db: Any) -> str:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeySchema": [{"AttributeName": KEY, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": KEY, "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in self.tags.items()]
        try:
            created = await db.create_table(**kwargs)
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":  # another daemon was first
                raise
            return "CREATING"
        log.info("lease table created", table=self.table)
        return str(created["TableDescription"]["TableStatus"])

    async def list(self) -> list[Lease]:
        db = await self._db()
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = await db.scan(**kwargs)
            leases += [_lease(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return leases
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def get(self, key: str) -> Lease | None:
        db = await self._db()
        got = await db.get_item(TableName=self.table, Key={KEY: {"S": key}}, ConsistentRead=True)
        return _lease(got["Item"]) if "Item" in got else None

    async def create(self, key: str, attrs: dict[str, Any] | None = None) -> Lease | None:
        """Create a free lease; None when it already exists."""
        item = {KEY: {"S": key}, COUNTER: {"N": "0"}, **_to_item(attrs or {})}
        written = await self._conditional(
            "put_item",
            Item=item,
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": KEY},
        )
        return None if written is None else Lease(key, None, 0, dict(attrs or {}))

    async def take(self, lease: Lease, *, increment: tuple[str, ...] = ()) -> Lease | None:
        """Become the owner of `lease` (free, expired or stolen) if nobody changed it since it
        was observed; None when somebody did. `increment` names numeric attributes of the user's
        to add 1 to in the same write (a count of owner switches, say). A pending hand-off
        request is cleared."""
        if _RESERVED & set(increment):
            raise ValueError(f"cannot increment {sorted(_RESERVED)}")
        names = {f"#i{i}": name for i, name in enumerate(increment)}
        adds = ", ".join(f"#i{i} :one" for i in range(len(increment)))
        item = await self._update(
            lease,
            "SET #o = :me, #c = :next" + (f" ADD {adds}" if adds else "") + " REMOVE #h",
            "#c = :seen",
            {":me": {"S": self.owner}, **({":one": {"N": "1"}} if adds else {})},
            names=names,
        )
        return None if item is None else _lease(item)

    async def renew(self, lease: Lease) -> Lease | None:
        """Prove we are alive; None when the lease was taken from us. The lease returned is the
        table's (a hand-off request shows in it)."""
        item = await self._update(
            lease, "SET #c = :next", "#o = :me AND #c = :seen", {":me": {"S": self.owner}}
        )
        return None if item is None else _lease(item)

    async def update(self, lease: Lease, attrs: dict[str, Any]) -> Lease | None:
        """Write our own attributes (a checkpoint) only while we still own the lease; the lease
        returned is the table's (a hand-off request shows in it)."""
        if not attrs or _RESERVED & attrs.keys():
            raise ValueError(f"attributes must be non-empty and not use {sorted(_RESERVED)}")
        names = {f"#a{i}": name for i, name in enumerate(attrs)}
        values = {f":a{i}": _serializer.serialize(v) for i, v in enumerate(attrs.values())}
        sets = ", ".join(f"#a{i} = :a{i}" for i in range(len(attrs)))
        item = await self._conditional(
            "update_item",
            Key={KEY: {"S": lease.key}},
            UpdateExpression=f"SET {sets}",
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": OWNER, **names},
            ExpressionAttributeValues={":me": {"S": self.owner}, **values},
        )
        return None if item is None else _lease(item)

    async def release(self, lease: Lease) -> bool:
        """Give a lease up (on shutdown) so others need not wait for it to expire."""
        item = await self._update(
            lease, "REMOVE #o, #h SET #c = :next", "#o = :me", {":me": {"S": self.owner}}
        )
        return item is not None

    async def request_handoff(self, lease: Lease) -> bool:
        """Ask `lease`'s owner (as observed) to hand it over to us; False when it has another
        owner now or somebody else asked first."""
        item = await self._conditional(
            "update_item",
            Key={KEY: {"S": lease.key}},
            UpdateExpression="SET #h = :me",
            ConditionExpression="#o = :owner AND (attribute_not_exists(#h) OR #h = :me)",
            ExpressionAttributeNames={"#o": OWNER, "#h": HANDOFF},
            ExpressionAttributeValues={":me": {"S": self.owner}, ":owner": {"S": lease.owner}},
        )
        return item is not None

    async def hand_over(self, lease: Lease, to: str, *, increment: tuple[str, ...] = ()) -> bool:
        """Make `to` the owner of a lease we own (it asked for it); False when we no longer own
        it. The counter moves, as for a take."""
        names = {f"#i{i}": name for i, name in enumerate(increment)}
        adds = ", ".join(f"#i{i} :one" for i in range(len(increment)))
        item = await self._conditional(
            "update_item",
            Key={KEY: {"S": lease.key}},
            UpdateExpression="SET #o = :to, #c = #c + :one"
            + (f" ADD {adds}" if adds else "")
            + " REMOVE #h",
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": OWNER, "#c": COUNTER, "#h": HANDOFF, **names},
            ExpressionAttributeValues={
                ":me": {"S": self.owner},
                ":to": {"S": to},
                ":one": {"N": "1"},
            },
        )
        return item is not None

    async def delete(self, key: str) -> None:
        db = await self._db()
        await db.delete_item(TableName=self.table, Key={KEY: {"S": key}})

    async def _update(
        self,
        lease: Lease,
        expression: str,
        condition: str,
        values: dict[str, Any],
        *,
        names: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """A conditional UpdateItem; the item as it is after it, or None when the condition
        failed."""
        values = {
            **values,
            ":seen": {"N": str(lease.counter)},
            ":next": {"N": str(lease.counter + 1)},
        }
        used = {k: v for k, v in values.items() if k in expression or k in condition}
        return await self._conditional(
            "update_item",
            Key={KEY: {"S": lease.key}},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames={
                **{
                    k: v
                    for k, v in (("#o", OWNER), ("#c", COUNTER), ("#h", HANDOFF))
                    if k in expression or k in condition
                },
                **(names or {}),
            },
            ExpressionAttributeValues=used,
        )

    async def _conditional(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """A conditional write; the item after it (`put_item`: as written), or None when its
        condition failed."""
        db = await self._db()
        if operation == "update_item":
            kwargs["ReturnValues"] = "ALL_NEW"
        try:
            response = await getattr(db, operation)(TableName=self.table, **kwargs)
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        item: dict[str, Any] = response.get("Attributes") or kwargs.get("Item") or {}
        return item


class ExpiryTracker:
    """Judges expiry from counter changes seen locally, never from other hosts' clocks."""

    def __init__(self, failover_time: float) -> None:
        self.failover_time = failover_time
        self._seen: dict[str, tuple[int, float]] = {}

    def observe(self, leases: Iterable[Lease], now: float) -> None:
        present = set()
        for lease in leases:
            present.add(lease.key)
            seen = self._seen.get(lease.key)
            if seen is None or seen[0] != lease.counter:
                self._seen[lease.key] = (lease.counter, now)
        for gone in self._seen.keys() - present:
            del self._seen[gone]

    def expired(self, lease: Lease, now: float) -> bool:
        if lease.owner is None:
            return True
        seen = self._seen.get(lease.key)
        return seen is not None and seen[0] == lease.counter and now - seen[1] >= self.failover_time


class LeaderLease:
    """At most one holder across a fleet: call `step(now)` every few seconds (a third of
    `failover_time` keeps the lease alive); it returns whether this process leads."""

    def __init__(self, table: LeaseTable, key: str, failover_time: float = 10.0) -> None:
        self.table = table
        self.key = key
        self.tracker = ExpiryTracker(failover_time)
        self.held: Lease | None = None

    async def step(self, now: float) -> bool:
        if self.held is not None:
            self.held = await self.table.renew(self.held)
            if self.held is None:
                log.warning("leadership lost", lease=self.key, table=self.table.table)
            return self.held is not None
        lease = await self.table.get(self.key) or await self.table.create(self.key)
        if lease is None:  # created by somebody else between our get and create
            lease = await self.table.get(self.key)
        if lease is None:
            return False
        self.tracker.observe([lease], now)
        if self.tracker.expired(lease, now):
            self.held = await self.table.take(lease)
            if self.held is not None:
                log.info(
                    "leadership acquired",
                    lease=self.key,
                    table=self.table.table,
                    previous_owner=lease.owner,
                )
        return self.held is not None

    async def release(self) -> None:
        if self.held is not None:
            await self.table.release(self.held)
            self.held = None


def _lease(item: dict[str, Any]) -> Lease:
    owner = item.get(OWNER, {}).get("S")
    attrs = {k: _deserializer.deserialize(v) for k, v in item.items() if k not in _RESERVED}
    counter = int(item.get(COUNTER, {}).get("N", "0"))
    return Lease(item[KEY]["S"], owner, counter, attrs, item.get(HANDOFF, {}).get("S"))


def _to_item(attrs: dict[str, Any]) -> dict[str, Any]:
    if _RESERVED & attrs.keys():
        raise ValueError(f"attributes must not use {sorted(_RESERVED)}")
    return {k: _serializer.serialize(v) for k, v in attrs.items()}
