"""The short way through Kinesis GetRecords answers gives what botocore's model walk gives."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import botocore.session
from aiobotocore.parsers import AioResponseParserFactory

from daemon.core.aws import parse_timestamp
from daemon.core.aws_fast import FastParserFactory


def answer() -> bytes:
    records: list[dict[str, Any]] = [
        {
            "SequenceNumber": str(49590338271490256608559692538361571095921575989136588898 + i),
            "ApproximateArrivalTimestamp": 1.7e9 + i / 1000,
            "Data": base64.b64encode(bytes([i % 256, 0, 255]) + b"x" * i).decode(),
            "PartitionKey": f"k{i}",
            "EncryptionType": "KMS",
            "NotInTheModel": True,  # dropped, as botocore drops it
        }
        for i in range(50)
    ]
    records[3]["EncryptionType"] = None  # null: left out, as botocore does
    del records[4]["ApproximateArrivalTimestamp"]
    child = {"ShardId": "s2", "ParentShards": ["s0"], "HashKeyRange": {"StartingHashKey": "0",
             "EndingHashKey": "9"}}  # fmt: skip
    return json.dumps(
        {"Records": records, "MillisBehindLatest": 7, "ChildShards": [child]}
    ).encode()


async def parse(factory: Any, body: bytes, shape: Any) -> Any:
    factory.set_parser_defaults(timestamp_parser=parse_timestamp)
    parser = factory.create_parser("json")
    return await parser.parse({"status_code": 200, "headers": {}, "body": body}, shape)


async def test_get_records_parse_the_same_as_botocore():
    output = botocore.session.get_session().get_service_model("kinesis")
    shape = output.operation_model("GetRecords").output_shape
    fast = await parse(FastParserFactory(), answer(), shape)
    assert fast == await parse(AioResponseParserFactory(), answer(), shape)
    assert fast["Records"][0]["Data"] == bytes([0, 0, 255])
    assert "EncryptionType" not in fast["Records"][3]
    assert fast["ChildShards"][0]["ParentShards"] == ["s0"]


async def test_a_record_shape_with_an_unknown_member_is_walked_by_botocore():
    model = botocore.session.get_session().get_service_model("kinesis")
    shape = copy.deepcopy(model.operation_model("GetRecords").output_shape)
    record = shape.members["Records"].member
    record.members["Extra"] = record.members["PartitionKey"]  # a member newer than this module
    body = json.loads(answer())
    for item in body["Records"]:
        item["Extra"] = "kept"
    raw = json.dumps(body).encode()
    fast = await parse(FastParserFactory(), raw, shape)
    assert fast == await parse(AioResponseParserFactory(), raw, shape)
    assert fast["Records"][0]["Extra"] == "kept"
