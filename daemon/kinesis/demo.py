"""The `make run` demo producer: a custom worker that puts readings on a stream through the
outbox, so the local setup shows records produced, read from every shard and archived.

`[custom.NAME] entrypoint = "daemon.kinesis.demo:produce"` with options `stream`, `every`
(seconds), `sensors` (partition keys), and `create` (create the stream and the `bucket` when
missing: only for the embedded local endpoint until declared resources create them).
"""

from __future__ import annotations

import itertools
import random
import socket
import time
from typing import Any

from daemon.aws import describe_error, error_code
from daemon.config.kinesis import PartitionKeyConfig
from daemon.kinesis.producer import kinesis_message

KEY = PartitionKeyConfig(source="field", field="sensor")


async def produce(ctx: Any, options: dict[str, Any]) -> None:
    stream = str(options["stream"])
    every = float(options.get("every", 2.0))
    sensors = int(options.get("sensors", 4))
    if options.get("create"):
        await _create(ctx, stream, int(options.get("shards", 2)), options.get("bucket"))
    host = socket.gethostname()
    for n in itertools.count():
        reading = {
            "sensor": f"sensor-{n % sensors}",
            "n": n,
            "value": round(20 + random.random() * 5, 2),
            "host": host,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        await ctx.services.outbox.put(kinesis_message(stream, reading, key=KEY, origin=ctx.name))
        if not await ctx.sleep(every):
            return


async def _create(ctx: Any, stream: str, shards: int, bucket: Any) -> None:
    kinesis = await ctx.services.clients.client("kinesis")
    try:
        await kinesis.create_stream(StreamName=stream, ShardCount=shards)
        ctx.log.info("demo stream created", stream=stream, shards=shards)
    except Exception as exc:  # noqa: BLE001 - already there is fine
        if error_code(exc) != "ResourceInUseException":
            ctx.log.warning("demo stream not created", error=describe_error(exc))
    if bucket:
        s3 = await ctx.services.clients.client("s3")
        try:
            await s3.create_bucket(Bucket=str(bucket))
            ctx.log.info("demo bucket created", bucket=bucket)
        except Exception as exc:  # noqa: BLE001 - already there is fine
            if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                ctx.log.warning("demo bucket not created", error=describe_error(exc))
