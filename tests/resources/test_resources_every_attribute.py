"""Every attribute the resource adapters write, applied to a real moto server and read back:
after one apply the plan is clean, so each adapter writes what it later reads and compares.

Left out: topic `attributes` such as SignatureVersion or TracingConfig, which moto accepts and
drops (on moto such a topic would stay "not yet visible" for ever), and KMS keys, which moto's
SQS and SNS do not check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.resources import cli, unique_env, write_config

ACCOUNT = "123456789012"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def every_attribute(env: str) -> dict[str, Any]:
    return {
        "mode": "enforce",
        "topics": {
            "orders.fifo": {
                "fifo": True,
                "content_based_deduplication": True,
                "tags": {"team": "edge"},
                "subscriptions": [
                    {"protocol": "sqs", "endpoint": "orders.fifo", "raw_delivery": True},
                ],
            },
            "events": {
                "display_name": "awsd events",
                "subscriptions": [
                    {
                        "protocol": "sqs",
                        "endpoint": "events",
                        "filter_policy": {"kind": ["order"], "size": [{"numeric": [">", 10]}]},
                        "filter_policy_scope": "MessageBody",
                        "dead_letter_queue": "events-dlq",
                    },
                    {
                        "protocol": "https",
                        "endpoint": "https://127.0.0.1:9/hook",
                    },  # never posted to,
                    {"protocol": "email", "endpoint": "ops@example.com"},
                    {"protocol": "sms", "endpoint": "+15555550100"},
                    {
                        "protocol": "lambda",
                        "endpoint": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{env}-f",
                    },
                ],
            },
        },
        "queues": {
            "orders.fifo": {
                "fifo": True,
                "content_based_deduplication": True,
                "visibility_timeout": 120,
                "delay": 5,
                "max_message_size": 65536,
                "encryption": "sqs",
            },
            "events": {
                "message_retention": 86400,
                "receive_wait": 10,
                "max_message_size": 131072,
                "redrive": {"dead_letter_queue": "events-dlq", "max_receive_count": 3},
                "encryption": "sqs",
            },
            "events-dlq": {"message_retention": 1209600},
        },
        "streams": {"burst": {"mode": "on-demand", "retention_hours": 72}},
        "buckets": {
            "logs": {"block_public_access": True},
            "data": {
                "versioning": True,
                "encryption": "sse-kms",
                "kms_key_id": KEY,
                "bucket_key": True,
                "block_public_access": True,
                "deny_unencrypted_uploads": True,
                "deny_insecure_transport": True,
                "policy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ReadFromTheAccount",
                            "Effect": "Allow",
                            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                            "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{env}-data/*",
                        }
                    ],
                },
                "lifecycle": [
                    {
                        "id": "age-out",
                        "prefix": "raw/",
                        "noncurrent_expire_days": 7,
                        "abort_incomplete_upload_days": 2,
                        "transitions": [{"days": 30, "storage_class": "STANDARD_IA"}],
                    }
                ],
                "logging": {"target_bucket": "logs", "prefix": "data/"},
                "tags": {"cost-centre": "42"},
            },
        },
        "tables": {
            "events": {
                "partition_key": "pk",
                "sort_key": "at",
                "sort_key_type": "N",
                "ttl_attribute": "expires",
                "point_in_time_recovery": True,
            }
        },
    }


def test_every_attribute_applies_and_then_plans_clean(
    configs: Any, capsys: pytest.CaptureFixture[str], boto: Any
):
    env = unique_env("k")
    path = write_config(configs, env, every_attribute(env))
    code, out, _ = cli(capsys, "apply", "--config", str(path), "--auto-approve")
    assert code == 0, out
    assert "Apply complete: 9 created" in out, out

    code, out, _ = cli(capsys, "plan", "--config", str(path))
    assert (code, out.splitlines()[-1]) == (0, "No changes. 9 resources match the configuration.")

    # Spot checks that the values are AWS's, not only awsd's view of them.
    sqs = boto("sqs")
    url = sqs.get_queue_url(QueueName=f"{env}-orders.fifo")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true" and attrs["DelaySeconds"] == "5"
    assert attrs["SqsManagedSseEnabled"] == "true"
    policy = json.loads(boto("s3").get_bucket_policy(Bucket=f"{env}-data")["Policy"])
    assert "ReadFromTheAccount" in {s.get("Sid") for s in policy["Statement"]}
    assert boto("kinesis").describe_stream_summary(StreamName=f"{env}-burst")[
        "StreamDescriptionSummary"
    ]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
