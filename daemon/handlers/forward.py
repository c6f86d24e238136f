"""The `forward` handler: pass each record on to SNS, SQS, Kinesis or a Lambda function
(asynchronous invocation), or to an HTTP webhook.

To AWS it goes through the durable outbox: `handle` returns only once the outbox has committed
the message, so the source may ack its input and nothing is lost between the two, whatever
happens to the process or the network afterwards. A message the outbox refuses (too large, too
many attributes, a FIFO destination without a group, a kind with no sender) fails the record with
the outbox's reason.

To a webhook it is a POST (or PUT) with a per-attempt timeout and capped exponential retries with
jitter (`daemon/base/retry.py`) for connection errors, timeouts, 429 and 5xx; other answers fail the
record at once.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from daemon.base.retry import Backoff, retry
from daemon.config.handlers import OUTBOX_KIND_RESOURCES, ForwardHandlerConfig
from daemon.handlers.base import Handler, HandlerError, Record
from daemon.handlers.document import content_type, record_json

ENCODING_ATTRIBUTE = "content-transfer-encoding"
"""Set to `base64` when a body that is not UTF-8 text had to be encoded for SNS/SQS; the SQS
poller decodes it back to bytes."""


class ForwardHandler(Handler):
    def __init__(self, cfg: ForwardHandlerConfig, services: Any, *, name: str = "") -> None:
        self.cfg = cfg
        self.services = services
        self.name = name or "forward"
        self.to, self.target = cfg.destination
        self._http: aiohttp.ClientSession | None = None

    async def handle(self, record: Record) -> None:
        if self.to == "url":
            await self._post(record)
            return
        from daemon.outbox import InvalidMessage, Message, OutboxFull  # noqa: PLC0415

        kind = OUTBOX_KIND_RESOURCES[self.to]
        target = await self.services.targets.aws_name(kind, self.target)
        message = Message(self.to, target, self.body_for(record), origin=self.name)
        try:
            await self.services.outbox.put(message)
        except InvalidMessage as exc:
            raise HandlerError(f"cannot forward to {self.to} {self.target}: {exc}") from None
        except OutboxFull as exc:
            raise HandlerError(f"cannot forward to {self.to} {self.target}: {exc}") from None

    # --- to AWS, through the outbox --------------------------------------------------------------

    def body_for(self, record: Record) -> dict[str, Any]:
        """The outbox body for `record` in the shape the destination's sender takes."""
        if self.to == "lambda":
            return {"payload": self._event(record)}
        key = str(record.meta.get("group_id") or record.meta.get("partition_key") or record.id)
        if self.to == "kinesis":
            if self.cfg.partition_key is not None:
                from daemon.outbox.producer import partition_key  # noqa: PLC0415 - as the outbox

                key = partition_key(self.cfg.partition_key, record.data)
            return {"data": base64.b64encode(record.body).decode("ascii"), "partition_key": key}
        attributes: dict[str, str] = dict(record.attributes) if self.cfg.keep_attributes else {}
        attributes.update(self.cfg.attributes)
        if record.text is not None:
            text = record.text
        else:
            text = base64.b64encode(record.body).decode("ascii")
            attributes[ENCODING_ATTRIBUTE] = "base64"
        body: dict[str, Any] = {
            "group_id": self.cfg.group_id or key,
            # SNS's own message id survives SNS -> SQS -> here, so a copy delivered twice by SNS
            # is deduplicated by a FIFO destination as well as a redelivered SQS message.
            "dedup_id": str(record.meta.get("message_id") or record.id)[:128],
        }
        if attributes:
            body["attributes"] = attributes
        if self.to == "sns":
            body["message"] = text
            subject = self.cfg.subject or record.meta.get("subject")
            if subject:
                body["subject"] = str(subject)
        else:
            body["body"] = text
        return body

    def _event(self, record: Record) -> str:
        """A function's event: the record described as JSON (`payload = "record"`), or its
        body when that is JSON, else the body as a JSON string (base64 for bytes)."""
        if self.cfg.payload == "record":
            return record_json(record).decode()
        if record.text is not None:
            try:
                json.loads(record.text)
            except ValueError:
                return json.dumps(record.text)
            return record.text
        return json.dumps(base64.b64encode(record.body).decode("ascii"))

    # --- to a webhook ----------------------------------------------------------------------------

    async def _post(self, record: Record) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout),
                headers={"User-Agent": "awsd"},
            )
        http = self._http
        if self.cfg.payload == "record":
            data, ctype = record_json(record), "application/json"
        else:
            data, ctype = record.body, content_type(record)
        headers = {
            "Content-Type": ctype,
            "X-Awsd-Record-Id": record.id,
            "X-Awsd-Record-Kind": record.kind,
            **self.cfg.headers,
        }

        async def attempt() -> None:
            async with http.request(
                self.cfg.method, self.target, data=data, headers=headers
            ) as resp:
                await resp.read()
                if resp.status == 429 or resp.status >= 500:
                    raise _RetryableStatus(resp.status, resp.reason)
                if resp.status >= 300:
                    raise HandlerError(
                        f"webhook {self.target} answered {resp.status} {resp.reason or ''}".strip()
                    )

        try:
            await retry(
                attempt,
                retry_if=_retryable,
                backoff=Backoff(self.cfg.retry_initial, max(self.cfg.retry_initial, 30.0)),
                attempts=self.cfg.retries + 1,
            )
        except _RetryableStatus as exc:
            raise HandlerError(
                f"webhook {self.target} answered {exc.status} {exc.reason or ''}".strip()
                + f" ({self.cfg.retries + 1} attempts)"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise HandlerError(
                f"webhook {self.target} failed: {error} ({self.cfg.retries + 1} attempts)"
            ) from None

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()


class _RetryableStatus(Exception):
    def __init__(self, status: int, reason: str | None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableStatus | aiohttp.ClientError | TimeoutError)
