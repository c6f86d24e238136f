"""Kinesis sender: PutRecords (≤ 500 records, ≤ 5 MiB per call, ≤ 1 MiB per record with its key),
only the records that failed retried, at most a configured rate per shard.

Body: `{"data": <base64>, "partition_key": str, "explicit_hash_key": <decimal str, optional>}`
(build it with `daemon.outbox.producer.kinesis_message`). Target: a stream name or ARN.

Order per partition key. The outbox hands over a destination's oldest messages and retries
failed ones before anything newer, so order holds across calls. Within one call, PutRecords
writes records in order, but a record can fail (throttled shard, internal error) while a later
record of the same key succeeds; retried, the failed one would then land after it. So by default
(`kinesis.producer.strict_order = true`) a batch is sent as rounds holding at most one record per
key, and once a record of a key fails, the key's later records are not sent in that batch: order
per key always holds. The cost: a batch takes as many calls as its busiest key has records, so a
backlog of a single hot key goes out at one record per round trip (AWS recommends the same, one
PutRecord per record, for strict order). Distinct keys, and any key at a rate below one record per
round trip, cost nothing extra. With `strict_order = false` a batch goes in full calls, and a
reorder is possible, counted (`awsd_kinesis_put_reordered_total`) and logged.

Rate: records are mapped to shards (MD5 of the partition key, or the explicit hash key, against
ListShards hash ranges, cached) and paced per shard by token buckets (`shard_records_per_second`,
`shard_bytes_per_second`), so a burst waits here instead of being throttled by AWS.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from daemon.base.awserrors import describe_error, error_code, is_throttle
from daemon.core.logs import get_logger
from daemon.core.shards import ShardInfo, hash_key, list_shards, shard_for, stream_args
from daemon.outbox.sender import InvalidMessage, Outcome, Retry, Sender, Sent
from daemon.outbox.store import Item

log = get_logger()

MAX_RECORD_BYTES = 1024 * 1024
MAX_CALL_BYTES = 5 * 1024 * 1024
MAX_HASH = 2**128 - 1
THROTTLE_CODES = frozenset({"ProvisionedThroughputExceededException", "KMSThrottlingException"})


class _Bucket:
    """A token bucket allowed to go into debt: a call waits until it is out of debt."""

    __slots__ = ("at", "bytes", "records")

    def __init__(self, now: float, records: float, size: float) -> None:
        self.at = now
        self.records = records
        self.bytes = size


class KinesisSender(Sender):
    kind = "kinesis"
    max_batch = 500
    max_batch_bytes = MAX_CALL_BYTES
    iam_actions = ("kinesis:PutRecords", "kinesis:ListShards")  # ListShards: per-shard pacing
    target_kind = "streams"

    def __init__(self, services: Any) -> None:
        super().__init__(services)
        self._maps: dict[str, tuple[float, list[ShardInfo]]] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        m = services.metrics
        self._reordered = m.counter(
            "awsd_kinesis_put_reordered_total",
            "Records retried after a later record of the same partition key was written",
        ).labels()
        self._failed = m.counter(
            "awsd_kinesis_put_failed_records_total",
            "Records PutRecords refused (they are retried)",
            ("code",),
        )
        self._waited = m.counter(
            "awsd_kinesis_put_rate_wait_seconds_total",
            "Seconds spent waiting for the per-shard rate limit",
        ).labels()

    @property
    def cfg(self) -> Any:
        return self.services.config.kinesis.producer

    @classmethod
    def validate(cls, target: str, body: dict[str, Any]) -> int:
        if not target:
            raise InvalidMessage("kinesis message needs a stream name or ARN as its target")
        key = body.get("partition_key")
        if not isinstance(key, str) or not 1 <= len(key) <= 256:
            raise InvalidMessage("kinesis record needs a 'partition_key' of 1 to 256 characters")
        data = body.get("data")
        if not isinstance(data, str):
            raise InvalidMessage("kinesis record needs 'data' as a base64 string")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMessage("kinesis record 'data' is not valid base64") from None
        ehk = body.get("explicit_hash_key")
        if ehk is not None and not (
            isinstance(ehk, str) and ehk.isdigit() and int(ehk) <= MAX_HASH
        ):
            raise InvalidMessage("'explicit_hash_key' must be a decimal integer below 2**128")
        size = len(raw) + len(key.encode())
        if size > MAX_RECORD_BYTES:
            raise InvalidMessage(
                f"kinesis record is {size} bytes with its partition key; the limit is "
                f"{MAX_RECORD_BYTES}"
            )
        return size

    async def send_batch(self, target: str, items: list[Item]) -> list[Outcome]:
        if not self.cfg.strict_order:
            return await self._put(target, items)
        outcomes: list[Outcome] = []
        blocked: set[str] = set()
        rest = items
        first = True
        while rest:
            keys: set[str] = set()
            round_, later = [], []
            for item in rest:
                key = _route_key(item)
                if key in blocked:
                    outcomes.append(Retry(item.id, "an earlier record of its key failed"))
                elif key in keys:
                    later.append(item)
                else:
                    keys.add(key)
                    round_.append(item)
            if not round_:
                break
            try:
                got = await self._put(target, round_)
            except Exception as exc:
                if first:
                    raise  # nothing was sent: the outbox (or poison isolation) handles it
                got = [Retry(i.id, describe_error(exc), is_throttle(exc)) for i in round_]
            first = False
            failed = {o.id for o in got if not isinstance(o, Sent)}
            blocked |= {_route_key(i) for i in round_ if i.id in failed}
            outcomes += got
            rest = later
        return outcomes

    async def _put(self, target: str, items: list[Item]) -> list[Outcome]:
        kinesis = await self.services.clients.client("kinesis")
        await self._pace(target, items)
        entries = []
        for item in items:
            entry: dict[str, Any] = {
                "Data": base64.b64decode(item.body["data"]),
                "PartitionKey": item.body["partition_key"],
            }
            if item.body.get("explicit_hash_key"):
                entry["ExplicitHashKey"] = item.body["explicit_hash_key"]
            entries.append(entry)
        try:
            response = await kinesis.put_records(Records=entries, **stream_args(target))
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                self._maps.pop(target, None)  # the reconciler may be creating it
            raise
        outcomes: list[Outcome] = []
        failed_keys: dict[str, int] = {}
        for index, (item, result) in enumerate(zip(items, response["Records"], strict=True)):
            code = result.get("ErrorCode")
            if code:
                self._failed.labels(code=str(code)).inc()
                failed_keys.setdefault(_route_key(item), index)
                outcomes.append(
                    Retry(
                        item.id,
                        f"{code}: {result.get('ErrorMessage', '')}",
                        throttled=code in THROTTLE_CODES,
                    )
                )
            else:
                outcomes.append(Sent(item.id, result.get("SequenceNumber")))
                first_failure = failed_keys.get(_route_key(item))
                if first_failure is not None:
                    self._reordered.inc()
                    log.warning(
                        "a later record of a key was written before an earlier one that failed",
                        stream=target,
                        partition_key=item.body["partition_key"],
                    )
        return outcomes

    # --- per-shard rate limit --------------------------------------------------------------------

    async def _pace(self, target: str, items: list[Item]) -> None:
        shards = await self._shard_map(target)
        if not shards:
            return
        per_shard: dict[str, list[float]] = {}
        for item in items:
            shard = shard_for(
                shards, hash_key(item.body["partition_key"], item.body.get("explicit_hash_key"))
            )
            if shard is not None:
                use = per_shard.setdefault(shard.id, [0.0, 0.0])
                use[0] += 1
                use[1] += item.size
        loop = asyncio.get_running_loop()
        rate_r, rate_b = self.cfg.shard_records_per_second, self.cfg.shard_bytes_per_second
        wait = 0.0
        now = loop.time()
        for shard_id in per_shard:
            bucket = self._bucket(target, shard_id, now)
            wait = max(wait, -bucket.records / rate_r, -bucket.bytes / rate_b)
        if wait > 0:
            self._waited.inc(wait)
            await asyncio.sleep(wait)
            now = loop.time()
        for shard_id, (records, size) in per_shard.items():
            bucket = self._bucket(target, shard_id, now)
            bucket.records -= records
            bucket.bytes -= size

    def _bucket(self, target: str, shard: str, now: float) -> _Bucket:
        rate_r, rate_b = self.cfg.shard_records_per_second, self.cfg.shard_bytes_per_second
        bucket = self._buckets.get((target, shard))
        if bucket is None:
            bucket = self._buckets[(target, shard)] = _Bucket(now, rate_r, rate_b)
            return bucket
        elapsed = now - bucket.at
        bucket.records = min(rate_r, bucket.records + elapsed * rate_r)
        bucket.bytes = min(rate_b, bucket.bytes + elapsed * rate_b)
        bucket.at = now
        return bucket

    async def _shard_map(self, target: str) -> list[ShardInfo]:
        now = asyncio.get_running_loop().time()
        cached = self._maps.get(target)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            kinesis = await self.services.clients.client("kinesis")
            shards = [s for s in await list_shards(kinesis, target) if not s.closed]
        except Exception as exc:  # noqa: BLE001 - pacing is best effort; PutRecords still runs
            if cached is None:
                log.warning(
                    "cannot map partition keys to shards; sending without the per-shard rate limit",
                    stream=target,
                    error=describe_error(exc),
                )
            shards = cached[1] if cached else []
        self._maps[target] = (now + self.cfg.shard_map_refresh, shards)
        return shards


def _route_key(item: Item) -> str:
    ehk = item.body.get("explicit_hash_key")
    return f"#{ehk}" if ehk else str(item.body["partition_key"])
