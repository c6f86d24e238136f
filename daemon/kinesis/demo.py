"""The `make run` demo producer: a custom worker that puts readings on a stream through the
outbox, so the local setup shows records produced, read from every shard and archived.

`[custom.NAME] entrypoint = "daemon.kinesis.demo:produce"` with options `stream` (a declared
stream's logical name, or an ARN), `every` (seconds) and `sensors` (how many partition keys).
`sends_to` declares the stream option, so `check-config` checks it and `awsd iam-policy` grants
PutRecords on it.
"""

from __future__ import annotations

import itertools
import random
import socket
import time
from typing import Any

from daemon.base.plugins import sends_to
from daemon.config.partition import PartitionKeyConfig
from daemon.outbox.producer import kinesis_message

KEY = PartitionKeyConfig(source="field", field="sensor")


@sends_to(stream="kinesis")
async def produce(ctx: Any, options: dict[str, Any]) -> None:
    stream = await ctx.services.targets.aws_name("streams", str(options["stream"]))
    every = float(options.get("every", 2.0))
    sensors = int(options.get("sensors", 4))
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
