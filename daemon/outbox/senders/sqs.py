"""SQS sender: SendMessageBatch (≤ 10 entries, ≤ 256 KiB per call), per-entry failures retried.

Body: `{"body": str, "attributes": {name: str | {"type": ..., "value": ...}}, "group_id": str,
"dedup_id": str, "delay_seconds": int}`. Target: a queue name or URL. FIFO queues (`.fifo`) need
a group id; without a dedup id the content hash is used (as with ContentBasedDeduplication).
"""

from __future__ import annotations

import hashlib
from typing import Any

from daemon.base.awserrors import error_code, is_throttle
from daemon.outbox.sender import InvalidMessage, Outcome, Reject, Retry, Sender, Sent
from daemon.outbox.store import Item

MAX_SQS_BYTES = 256 * 1024
SENDER_FAULT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "RequestThrottled", "ThrottlingException"}
)


def attribute_size(attributes: dict[str, Any]) -> int:
    size = 0
    for name, value in attributes.items():
        kind, text = _attribute(value)
        size += len(name.encode()) + len(kind.encode()) + len(text.encode())
    return size


def _attribute(value: Any) -> tuple[str, str]:
    if isinstance(value, dict):
        return str(value.get("type", "String")), str(value.get("value", ""))
    if isinstance(value, bool):
        return "String", str(value).lower()
    if isinstance(value, int | float):
        return "Number", str(value)
    return "String", str(value)


def message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in attributes.items():
        kind, text = _attribute(value)
        out[name] = {"DataType": kind, "StringValue": text}
    return out


def content_dedup_id(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


class SqsSender(Sender):
    kind = "sqs"
    max_batch = 10
    max_batch_bytes = MAX_SQS_BYTES
    iam_actions = ("sqs:SendMessage", "sqs:GetQueueUrl")
    target_kind = "queues"

    def __init__(self, services: Any) -> None:
        super().__init__(services)
        self._urls: dict[str, str] = {}

    @classmethod
    def validate(cls, target: str, body: dict[str, Any]) -> int:
        text = body.get("body")
        if not isinstance(text, str) or not text:
            raise InvalidMessage("sqs message needs a non-empty string 'body'")
        attributes = body.get("attributes") or {}
        if len(attributes) > 10:
            raise InvalidMessage(f"sqs allows at most 10 message attributes, got {len(attributes)}")
        size = len(text.encode()) + attribute_size(attributes)
        if size > MAX_SQS_BYTES:
            raise InvalidMessage(
                f"sqs message is {size} bytes with attributes; the limit is {MAX_SQS_BYTES}"
            )
        if target.endswith(".fifo") and not body.get("group_id"):
            raise InvalidMessage(f"queue {target} is FIFO: the message needs a group_id")
        return size

    async def queue_url(self, target: str) -> str:
        if target.startswith(("https://", "http://")):
            return target
        url = self._urls.get(target)
        if url is None:
            sqs = await self.services.clients.client("sqs")
            url = str((await sqs.get_queue_url(QueueName=target))["QueueUrl"])
            self._urls[target] = url
        return url

    async def send_batch(self, target: str, items: list[Item]) -> list[Outcome]:
        sqs = await self.services.clients.client("sqs")
        url = await self.queue_url(target)
        fifo = url.endswith(".fifo")
        entries = []
        for item in items:
            entry: dict[str, Any] = {"Id": str(item.id), "MessageBody": item.body["body"]}
            if item.body.get("attributes"):
                entry["MessageAttributes"] = message_attributes(item.body["attributes"])
            if item.body.get("delay_seconds") and not fifo:
                entry["DelaySeconds"] = int(item.body["delay_seconds"])
            if fifo:
                entry["MessageGroupId"] = item.body["group_id"]
                entry["MessageDeduplicationId"] = item.body.get("dedup_id") or content_dedup_id(
                    item.body["body"]
                )
            entries.append(entry)
        try:
            response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
        except Exception as exc:
            if error_code(exc) == "AWS.SimpleQueueService.NonExistentQueue":
                self._urls.pop(target, None)  # resolve again: the reconciler may create it
            raise
        outcomes: list[Outcome] = [
            Sent(int(ok["Id"]), ok.get("MessageId")) for ok in response.get("Successful", [])
        ]
        for failed in response.get("Failed", []):
            error = f"{failed.get('Code')}: {failed.get('Message', '')}"
            if failed.get("SenderFault") and failed.get("Code") not in SENDER_FAULT_CODES:
                outcomes.append(Reject(int(failed["Id"]), error))
            else:
                outcomes.append(
                    Retry(int(failed["Id"]), error, throttled=is_throttle_code(failed.get("Code")))
                )
        return outcomes


def is_throttle_code(code: Any) -> bool:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    return is_throttle(ClientError({"Error": {"Code": str(code)}}, "SendMessageBatch"))
