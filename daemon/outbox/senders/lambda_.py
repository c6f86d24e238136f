"""Lambda sender: asynchronous invocation (`InvocationType=Event`), one call per message.

Body: `{"payload": <JSON text>}`. Target: a function name or ARN (a qualified ARN invokes that
version or alias). Lambda queues an asynchronous invocation and answers 202 at once, so a sent
message means Lambda holds the event (its own retries and destinations take it from there),
not that the function ran: that is as far as an outbox can see.

Lambda takes no batch: a batch of the outbox is one Invoke per message, in order. A payload that
is not JSON or too large is refused at `put`; a function that does not exist (yet) or an
outage is retried with the outbox's backoff; Lambda's throttling
(TooManyRequestsException) counts as throttled.
"""

from __future__ import annotations

import json
from typing import Any

from daemon.base.awserrors import describe_error, is_bad_request, is_throttle
from daemon.outbox.sender import InvalidMessage, Outcome, Reject, Retry, Sender, Sent
from daemon.outbox.store import Item

MAX_ASYNC_PAYLOAD = 256 * 1024
"""Bytes of an asynchronous invocation's payload Lambda accepts."""


def lambda_message(payload: Any) -> dict[str, Any]:
    """The outbox body invoking a function with `payload` (anything JSON can hold)."""
    return {"payload": json.dumps(payload, separators=(",", ":"))}


class LambdaSender(Sender):
    kind = "lambda"
    max_batch = 10
    max_batch_bytes = 10 * MAX_ASYNC_PAYLOAD
    iam_actions = ("lambda:InvokeFunction",)
    target_kind = "functions"

    @classmethod
    def validate(cls, target: str, body: dict[str, Any]) -> int:
        payload = body.get("payload")
        if not isinstance(payload, str) or not payload:
            raise InvalidMessage("a lambda message needs a non-empty string 'payload' (JSON)")
        size = len(payload.encode())
        if size > MAX_ASYNC_PAYLOAD:
            raise InvalidMessage(
                f"lambda payload is {size} bytes; an asynchronous invocation takes at most "
                f"{MAX_ASYNC_PAYLOAD}"
            )
        try:
            json.loads(payload)
        except json.JSONDecodeError as exc:
            raise InvalidMessage(f"lambda payload is not JSON: {exc.msg}") from None
        return size

    async def send_batch(self, target: str, items: list[Item]) -> list[Outcome]:
        client = await self.services.clients.client("lambda")
        outcomes: list[Outcome] = []
        for item in items:
            try:
                response = await client.invoke(
                    FunctionName=target,
                    InvocationType="Event",
                    Payload=item.body["payload"].encode(),
                )
            except Exception as exc:  # noqa: BLE001 - one outcome per message
                if is_bad_request(exc):
                    outcomes.append(Reject(item.id, describe_error(exc)))
                else:
                    outcomes.append(Retry(item.id, describe_error(exc), throttled=is_throttle(exc)))
                continue
            request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
            outcomes.append(Sent(item.id, request_id))
        return outcomes
