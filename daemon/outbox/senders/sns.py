"""SNS sender: PublishBatch (≤ 10 entries, ≤ 256 KiB per message and per call), per-entry
failures retried alone.

Body: `{"message": str, "subject": str, "attributes": {name: str | number | {"type": ...,
"value": ...}}, "group_id": str, "dedup_id": str}`. Target: a topic name or ARN. Names are
resolved to ARNs without creating anything (`daemon.core.targets`: the account from STS
GetCallerIdentity, which needs no permission, once per config).
FIFO topics (`.fifo`) need a group id; without a dedup id the content hash is used, so a message
retried after a lost answer is not published twice.
"""

from __future__ import annotations

import re
from typing import Any

from daemon.outbox.sender import InvalidMessage, Outcome, Reject, Retry, Sender, Sent
from daemon.outbox.senders.sqs import (
    SENDER_FAULT_CODES,
    attribute_size,
    content_dedup_id,
    is_throttle_code,
    message_attributes,
)
from daemon.outbox.store import Item

MAX_SNS_BYTES = 256 * 1024
MAX_ATTRIBUTES = 10
TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
GROUP_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
RESERVED_PREFIXES = ("aws.", "amazon.")


def is_fifo(target: str) -> bool:
    return target.endswith(".fifo")


def check_topic(target: str) -> None:
    if target.startswith("arn:"):
        if not TOPIC_ARN.match(target):
            raise InvalidMessage(f"{target!r} is not an SNS topic ARN")
        return
    base = target.removesuffix(".fifo")
    if not TOPIC_NAME.match(base):
        raise InvalidMessage(
            f"{target!r} is not a topic name (letters, digits, '-', '_', at most 256, "
            "'.fifo' for FIFO) or an SNS topic ARN"
        )


def check_subject(subject: Any) -> None:
    if not isinstance(subject, str) or not subject:
        raise InvalidMessage("sns subject must be a non-empty string")
    if len(subject) >= 100:
        raise InvalidMessage(f"sns subject is {len(subject)} characters; it must be under 100")
    if not subject.isascii() or not subject.isprintable():
        raise InvalidMessage("sns subject must be printable ASCII without line breaks")
    if not subject[0].isalnum() and subject[0] not in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~":
        raise InvalidMessage("sns subject must begin with a letter, a digit or punctuation")


def check_attributes(attributes: Any, service: str = "sns") -> None:
    if not isinstance(attributes, dict):
        raise InvalidMessage(f"{service} attributes must be a table of name = value")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidMessage(
            f"{service} allows at most {MAX_ATTRIBUTES} message attributes, got {len(attributes)}"
        )
    for name, value in attributes.items():
        if (
            not ATTRIBUTE_NAME.match(name)
            or name.lower().startswith(RESERVED_PREFIXES)
            or name.startswith(".")
            or name.endswith(".")
            or ".." in name
        ):
            raise InvalidMessage(
                f"message attribute name {name!r} is invalid (letters, digits, '_', '-', '.'; "
                "not starting with AWS. or Amazon.; no leading, trailing or double '.')"
            )
        text = value.get("value") if isinstance(value, dict) else value
        if text is None or str(text) == "":
            raise InvalidMessage(f"message attribute {name!r} has an empty value")


class SnsSender(Sender):
    kind = "sns"
    max_batch = 10
    max_batch_bytes = MAX_SNS_BYTES
    iam_actions = ("sns:Publish",)  # PublishBatch is authorised as sns:Publish
    target_kind = "topics"

    @classmethod
    def validate(cls, target: str, body: dict[str, Any]) -> int:
        check_topic(target)
        text = body.get("message")
        if not isinstance(text, str) or not text:
            raise InvalidMessage("sns message needs a non-empty string 'message'")
        if body.get("subject") is not None:
            check_subject(body["subject"])
        attributes = body.get("attributes") or {}
        check_attributes(attributes)
        size = len(text.encode()) + attribute_size(attributes)
        if size > MAX_SNS_BYTES:
            raise InvalidMessage(
                f"sns message is {size} bytes with its attributes; the limit is {MAX_SNS_BYTES}"
            )
        if is_fifo(target):
            group = body.get("group_id")
            if not group:
                raise InvalidMessage(f"topic {target} is FIFO: the message needs a group_id")
            if not isinstance(group, str) or not GROUP_ID.match(group):
                raise InvalidMessage(
                    "group_id must be 1-128 printable ASCII characters without spaces"
                )
        return size

    async def topic_arn(self, target: str) -> str:
        """The ARN of a topic given by name or ARN (no API call after the first)."""
        return await self.services.targets.arn_for("topics", target)

    async def send_batch(self, target: str, items: list[Item]) -> list[Outcome]:
        sns = await self.services.clients.client("sns")
        arn = await self.topic_arn(target)
        fifo = is_fifo(arn)
        entries = []
        for item in items:
            body = item.body
            entry: dict[str, Any] = {"Id": str(item.id), "Message": body["message"]}
            if body.get("subject"):
                entry["Subject"] = body["subject"]
            if body.get("attributes"):
                entry["MessageAttributes"] = message_attributes(body["attributes"])
            if fifo:
                entry["MessageGroupId"] = body["group_id"]
                entry["MessageDeduplicationId"] = body.get("dedup_id") or content_dedup_id(
                    body["message"]
                )
            entries.append(entry)
        response = await sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
        return batch_outcomes(response)


def batch_outcomes(response: dict[str, Any]) -> list[Outcome]:
    """Outcomes from a PublishBatch answer: failed entries are retried alone unless AWS says the
    entry itself is at fault (then it is rejected for good, with AWS's reason)."""
    outcomes: list[Outcome] = [
        Sent(int(ok["Id"]), ok.get("MessageId")) for ok in response.get("Successful", [])
    ]
    for failed in response.get("Failed", []):
        error = f"{failed.get('Code')}: {failed.get('Message', '')}"
        code = failed.get("Code")
        throttled = is_throttle_code(code)
        if failed.get("SenderFault") and not throttled and code not in SENDER_FAULT_CODES:
            outcomes.append(Reject(int(failed["Id"]), error))
        else:
            outcomes.append(Retry(int(failed["Id"]), error, throttled=throttled))
    return outcomes
