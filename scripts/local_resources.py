"""TEMPORARY stand-in for the reconciler (issue 7) on `make run`: creates the topic, queues and
subscription configs/local.toml uses, in the embedded moto server on 127.0.0.1:4566, once it
answers. Remove this file and its line in the Makefile once `[resources]` in configs/local.toml
declares them (the reconciler creates them at startup); nothing else depends on it.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request

import boto3

ENDPOINT = "http://127.0.0.1:4566"


def main() -> int:
    give_up = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{ENDPOINT}/moto-api/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > give_up:
                print("local_resources: no moto server on 4566", file=sys.stderr)
                return 1
            time.sleep(0.2)
    kw = {
        "endpoint_url": ENDPOINT,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sns, sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
    dlq = sqs.create_queue(QueueName="local-readings-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 5}
    queue = sqs.create_queue(
        QueueName="local-readings",
        Attributes={"VisibilityTimeout": "60", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    topic = sns.create_topic(Name="local-readings")["TopicArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    sns.create_topic(Name="local-alerts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
