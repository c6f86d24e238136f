"""SMS sender: SNS Publish straight to a phone number, one message per call.

Target: an E.164 number (`+` country code and number, at most 15 digits). Body: `{"message":
str, "sms_type": "Transactional" | "Promotional", "sender_id": str}`. A message must fit one SMS
part, 140 bytes: 160 characters of the GSM 03.38 alphabet (the characters of its extension
table count twice), or 70 UTF-16 units when any other character is present (accents outside
GSM, emoji). `fit_sms` shortens a text to fit, for alerts that must go out anyway.
"""

from __future__ import annotations

import re
from typing import Any

from daemon.outbox.sender import InvalidMessage, Outcome, Sender, Sent
from daemon.outbox.store import Item

SMS_BYTES = 140
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
SENDER_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]{1,11}$")
SMS_TYPES = ("Transactional", "Promotional")

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def sms_size(text: str) -> tuple[int, str]:
    """Bytes `text` takes in one SMS part, and the encoding SNS would use (GSM-7 or UCS-2)."""
    septets = 0
    for char in text:
        if char in GSM7_BASIC:
            septets += 1
        elif char in GSM7_EXTENDED:
            septets += 2
        else:
            return len(text.encode("utf-16-le")), "UCS-2"
    return (septets * 7 + 7) // 8, "GSM-7"


def fit_sms(text: str, marker: str = "...") -> str:
    """`text`, cut (with `marker`) so that it fits one SMS part."""
    if sms_size(text)[0] <= SMS_BYTES:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits together with the marker
        mid = (low + high + 1) // 2
        if sms_size(text[:mid] + marker)[0] <= SMS_BYTES:
            low = mid
        else:
            high = mid - 1
    return text[:low] + marker


def check_phone(number: str) -> None:
    if not E164.match(number):
        raise InvalidMessage(
            f"{number!r} is not an E.164 phone number: '+', the country code and the number, "
            "digits only, at most 15 (for example +447700900123)"
        )


class SmsSender(Sender):
    kind = "sms"
    max_batch = 1  # SNS has no batch call for SMS
    max_batch_bytes = SMS_BYTES * 4
    iam_actions = ("sns:Publish",)
    target_kind = None  # a phone number is no resource: sns:Publish on `*`

    @classmethod
    def validate(cls, target: str, body: dict[str, Any]) -> int:
        check_phone(target)
        text = body.get("message")
        if not isinstance(text, str) or not text:
            raise InvalidMessage("sms needs a non-empty string 'message'")
        size, encoding = sms_size(text)
        if size > SMS_BYTES:
            raise InvalidMessage(
                f"sms text takes {size} bytes as {encoding} ({len(text)} characters); one SMS "
                f"holds {SMS_BYTES} bytes (160 GSM-7 characters, or 70 when any character is "
                "outside the GSM alphabet)"
            )
        sms_type = body.get("sms_type", "Transactional")
        if sms_type not in SMS_TYPES:
            raise InvalidMessage(f"sms_type must be Transactional or Promotional, not {sms_type!r}")
        sender_id = body.get("sender_id")
        if sender_id is not None and not (
            isinstance(sender_id, str) and SENDER_ID.match(sender_id)
        ):
            raise InvalidMessage(
                f"sender_id {sender_id!r} must be 1-11 letters or digits with at least one letter"
            )
        return size

    async def send_batch(self, target: str, items: list[Item]) -> list[Outcome]:
        sns = await self.services.clients.client("sns")
        outcomes: list[Outcome] = []
        for item in items:
            attributes = {
                "AWS.SNS.SMS.SMSType": {
                    "DataType": "String",
                    "StringValue": item.body.get("sms_type", "Transactional"),
                }
            }
            if item.body.get("sender_id"):
                attributes["AWS.SNS.SMS.SenderID"] = {
                    "DataType": "String",
                    "StringValue": item.body["sender_id"],
                }
            response = await sns.publish(
                PhoneNumber=target, Message=item.body["message"], MessageAttributes=attributes
            )
            outcomes.append(Sent(item.id, response.get("MessageId")))
        return outcomes
