"""A Lambda function for the readings topic: the demo function of `configs/local.toml`.

It is never imported by awsd: the reconciler zips this one file (`code =
"python:daemon.sns.reading_function"`) and deploys it, and SNS invokes `handler` with each
reading published to the topic. It logs the readings, one JSON line each, which Lambda ships to
the function's log group. It uses nothing but the standard library, as a Lambda function must.
"""

from __future__ import annotations

import json
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """SNS event in, one log line per reading out."""
    records = event.get("Records", [])
    for record in records:
        sns = record.get("Sns", {})
        print(json.dumps({"topic": sns.get("TopicArn"), "reading": sns.get("Message")}))
    return {"readings": len(records)}
