"""The consumers `bench/kinesis.py` compares, each run in its own process:

    python -m bench.kinesis_consumers NAME ENDPOINT STREAM EXPECTED [EXTRA]

It prints one JSON line: `{"records": n, "seconds": wall, "cpu": seconds}`, both measured from
the first call to the last record (CPU of every thread of the process, imports and start-up
excluded). Each consumer decodes every record as JSON, as its users would. Only the standard
library is imported at the top: the async-kinesis consumer runs in its own virtualenv (it needs
aiobotocore 3, awsd's aioboto3 pins 2).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import tempfile
import time
from typing import Any

COUNT = [0]


def simple(endpoint: str, stream: str, expected: int, budget: float) -> dict[str, Any]:
    """The simple loop: get_records(Limit=2) in a loop on one shard at a time, one shard after
    the other, until each shard is drained or its share of the time budget ends."""
    import boto3

    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    shards = [
        s["ShardId"]
        for s in kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]
    ]
    count = 0
    began, cpu = time.perf_counter(), time.process_time()
    for shard in shards:
        stop_at = time.perf_counter() + budget / len(shards)
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        # Every call uses Limit=2, the way such a loop reads a live stream once caught up.
        response = kinesis.get_records(ShardIterator=iterator, Limit=2)
        while "NextShardIterator" in response and time.perf_counter() < stop_at:
            for record in response["Records"]:
                json.loads(record["Data"])
                count += 1
            if not response["Records"] and response["MillisBehindLatest"] == 0:
                break
            response = kinesis.get_records(ShardIterator=response["NextShardIterator"], Limit=2)
    return {
        "records": count,
        "seconds": time.perf_counter() - began,
        "cpu": time.process_time() - cpu,
    }


async def _async_kinesis(endpoint: str, stream: str, expected: int, rate: int) -> dict[str, Any]:
    from kinesis import Consumer, JsonProcessor

    count = 0
    began, cpu = time.perf_counter(), time.process_time()
    async with Consumer(
        stream_name=stream,
        endpoint_url=endpoint,
        region_name="us-east-1",
        iterator_type="TRIM_HORIZON",
        processor=JsonProcessor(),
        shard_fetch_rate=rate,
    ) as consumer:
        while count < expected:
            async for _item in consumer:
                count += 1
                if count >= expected:
                    break
    return {
        "records": count,
        "seconds": time.perf_counter() - began,
        "cpu": time.process_time() - cpu,
    }


async def count(record: Any) -> None:
    """The awsd reader's handler: its decoder already parsed the JSON."""
    COUNT[0] += 1


async def _awsd(endpoint: str, stream: str, expected: int, max_records: int) -> dict[str, Any]:
    from daemon.config.models import Config
    from daemon.config.outbox import OutboxConfig
    from daemon.core.aws import AwsClients
    from daemon.core.events import EventBus
    from daemon.core.metrics import Registry
    from daemon.outbox import Outbox
    from daemon.runtime.supervisor import Supervisor
    from daemon.services import Services
    from daemon.workers.kinesis_reader import specs

    with tempfile.TemporaryDirectory() as state:
        reader = {
            "stream": stream,
            "handler": {"kind": "python", "entrypoint": "bench.kinesis_consumers:count"},
            "max_records": max_records,
        }
        config = Config.model_validate(
            {
                "env": "bench",
                "aws": {"region": "us-east-1", "endpoint_url": endpoint},
                "runtime": {"state_dir": state},
                "kinesis": {"readers": {"bench": reader}},
            }
        )
        metrics = Registry()
        events = EventBus(metrics)
        clients = AwsClients(config.aws, metrics=metrics)
        outbox = Outbox(OutboxConfig(path=":memory:"), ":memory:", metrics=metrics, events=events)
        services = Services(config, metrics=metrics, events=events, clients=clients, outbox=outbox)
        supervisor = Supervisor(metrics)
        loop = asyncio.get_running_loop()
        began, cpu = time.perf_counter(), time.process_time()
        await supervisor.apply(specs(config), services, config.runtime, loop.time() + 5)
        # The handler counts in the imported module (this file may run as __main__).
        counter = importlib.import_module("bench.kinesis_consumers").COUNT
        while counter[0] < expected:
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - began
        used = time.process_time() - cpu
        await supervisor.stop_all(loop.time() + 5)
        await clients.close()
        await outbox.close()
    return {"records": counter[0], "seconds": seconds, "cpu": used}


def main(argv: list[str]) -> None:
    name, endpoint, stream, expected = argv[0], argv[1], argv[2], int(argv[3])
    extra = argv[4] if len(argv) > 4 else None
    if name == "simple":
        result = simple(endpoint, stream, expected, float(extra or 20))
    elif name == "async-kinesis":
        result = asyncio.run(_async_kinesis(endpoint, stream, expected, int(extra or 1)))
    else:
        from daemon.cli.common import run_async

        box: dict[str, Any] = {}

        async def go() -> int:
            box.update(await _awsd(endpoint, stream, expected, int(extra or 1000)))
            return 0

        run_async(go())
        result = box
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
