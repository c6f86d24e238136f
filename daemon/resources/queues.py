"""SQS queues: attributes, redrive, encryption, tags, and the generated queue policy.

The queue policy is generated: every declared topic that subscribes the queue (or uses it as a
subscription's dead-letter queue) gets a statement letting `sns.amazonaws.com` send to it from
that topic's ARN only, plus any `policy_statements` the file adds.

AWS timing: a queue deleted less than 60 s ago cannot be created again (QueueDeletedRecently):
`create` asks the applier to wait 61 s. A create that finds the queue with other attributes
(QueueNameExists) is not an error: the applier reads it back and updates what differs.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.base.awserrors import error_code
from daemon.base.fields import KmsKeyRef, QueueRef, Section
from daemon.resources.diff import Entries, is_ignored
from daemon.resources.kind import (
    ACCESS_DENIED,
    Declared,
    Found,
    Kind,
    NameRule,
    Observed,
    Place,
    Problem,
    ResourceBase,
    ResourceRef,
    RetryAfter,
    Session,
    owned_by,
    ownership_tags,
    tags_to_set,
)


class RedriveConfig(Section):
    """Where messages go after too many receives."""

    dead_letter_queue: QueueRef
    """The dead-letter queue: a declared queue's logical name, or a queue ARN."""

    max_receive_count: int = Field(ge=1, le=1000)
    """Receives after which a message moves to the dead-letter queue."""


class QueueConfig(ResourceBase):
    """An SQS queue. The policy that lets subscribed topics deliver to it is generated."""

    fifo: bool = False
    """A FIFO queue (the `.fifo` suffix is added to the name when missing)."""

    content_based_deduplication: bool | None = None
    """FIFO only: deduplicate by a hash of the body when no deduplication id is given."""

    visibility_timeout: int | None = Field(default=None, ge=0, le=43200)
    """Seconds a received message stays invisible to other consumers (AWS default 30)."""

    message_retention: int | None = Field(default=None, ge=60, le=1209600)
    """Seconds a message is kept (60 s to 14 days; AWS default 4 days)."""

    delay: int | None = Field(default=None, ge=0, le=900)
    """Seconds every new message stays invisible (AWS default 0)."""

    max_message_size: int | None = Field(default=None, ge=1024, le=1048576)
    """Largest message in bytes (AWS default 1 MiB)."""

    receive_wait: int | None = Field(default=None, ge=0, le=20)
    """Default long-poll wait of ReceiveMessage in seconds (AWS default 0)."""

    redrive: RedriveConfig | None = None
    """Dead-letter queue and receive count."""

    encryption: Literal["sqs", "kms", "none"] | None = None
    """Encryption at rest: `sqs` (SQS-managed keys), `kms` (with `kms_key_id`) or `none`."""

    kms_key_id: KmsKeyRef | None = None
    """KMS key for `encryption = "kms"` (id, ARN or alias; `alias/aws/sqs` by default)."""

    policy_statements: list[dict[str, Any]] = Field(default_factory=list)
    """Extra statements for the queue policy, besides the generated ones that let subscribed
    topics send to it."""

    @model_validator(mode="after")
    def _consistent(self) -> QueueConfig:
        if self.content_based_deduplication is not None and not self.fifo:
            raise ValueError("content_based_deduplication needs fifo = true")
        if self.kms_key_id is not None and self.encryption != "kms":
            raise ValueError('kms_key_id needs encryption = "kms"')
        return self


MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
DELETED_RECENTLY = frozenset(
    {"AWS.SimpleQueueService.QueueDeletedRecently", "QueueDeletedRecently"}
)
NAME_EXISTS = frozenset({"QueueNameExists", "QueueAlreadyExists"})
RECREATE_WAIT = 61.0  # AWS: "wait at least 60 seconds after deleting a queue"

_INT_ATTRIBUTES = {
    "visibility_timeout": "VisibilityTimeout",
    "message_retention": "MessageRetentionPeriod",
    "delay": "DelaySeconds",
    "max_message_size": "MaximumMessageSize",
    "receive_wait": "ReceiveMessageWaitTimeSeconds",
}


def recreate_delay(exc: BaseException) -> float | None:
    """Seconds to wait before creating the queue again, when AWS refused because it was
    deleted recently; None for any other error."""
    return RECREATE_WAIT if error_code(exc) in DELETED_RECENTLY else None


class QueueKind(Kind[QueueConfig]):
    name = "queues"
    singular = "queue"
    name_rule = NameRule(
        re.compile(r"^(?=.{1,80}$)[A-Za-z0-9_-]+(\.fifo)?$"),
        "1-80 letters, digits, '-' or '_' (the '.fifo' suffix included)",
    )
    service = "sqs"
    tag_read_actions = ("sqs:ListQueueTags",)
    read_actions = ("sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ListQueueTags")
    write_actions = ("sqs:CreateQueue", "sqs:SetQueueAttributes", "sqs:TagQueue")
    delete_actions = ("sqs:DeleteQueue",)
    list_actions = ("sqs:ListQueues",)

    def finish_name(self, spec: QueueConfig, name: str) -> str:
        return name + ".fifo" if spec.fifo and not name.endswith(".fifo") else name

    def check_name(self, spec: QueueConfig, physical: str) -> str | None:
        if physical.endswith(".fifo") and not spec.fifo:
            return "the name ends in .fifo but fifo is not set"
        return None

    def references(self, name: str, spec: QueueConfig, all_declared: Any) -> list[ResourceRef]:
        if spec.redrive is None:
            return []
        path = f"resources.queues.{name}.redrive.dead_letter_queue"
        return [ResourceRef("queues", spec.redrive.dead_letter_queue, path, f"queue.{name}")]

    def problems(self, declared: dict[str, QueueConfig], all_declared: Any) -> list[Problem]:
        """A FIFO queue only redrives to a FIFO queue (and a standard one to a standard one)."""
        problems = []
        for name, queue in declared.items():
            if queue.redrive is None:
                continue
            path = f"resources.queues.{name}.redrive.dead_letter_queue"
            dlq = declared.get(queue.redrive.dead_letter_queue)
            if dlq is not None and dlq.fifo != queue.fifo:
                problems.append(
                    (
                        path,
                        "the dead-letter queue of a FIFO queue must be FIFO too (and standard for "
                        "a standard queue)",
                    )
                )
            if queue.redrive.dead_letter_queue == name:
                problems.append((path, "a queue cannot be its own DLQ"))
        return problems

    def arn(self, physical: str, ctx: Place) -> str:
        return f"arn:{ctx.partition}:sqs:{ctx.region}:{ctx.account}:{physical}"

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, QueueConfig)
        out: dict[str, Any] = {"fifo": spec.fifo}
        if spec.content_based_deduplication is not None:
            out["content_based_deduplication"] = spec.content_based_deduplication
        for field in _INT_ATTRIBUTES:
            value = getattr(spec, field)
            if value is not None:
                out[field] = value
        if spec.redrive is not None:
            out["redrive"] = {
                "dead_letter_queue": ctx.arn_of("queues", spec.redrive.dead_letter_queue),
                "max_receive_count": spec.redrive.max_receive_count,
            }
        if spec.encryption is not None:
            out["encryption"] = spec.encryption
            if spec.encryption == "kms":
                out["kms_key_id"] = spec.kms_key_id or "alias/aws/sqs"
        policy = self.policy(res, ctx)
        if policy is not None:
            out["policy"] = policy
        out["tags"] = Entries({**spec.tags, **ownership_tags(ctx.env)})
        return out

    def compared(self, res: Declared) -> set[str]:
        fields = super().compared(res) - {"fifo", "policy_statements"}
        if "encryption" in fields and getattr(res.spec, "encryption", None) == "kms":
            fields.add("kms_key_id")
        return fields | {"policy"}

    def policy(self, res: Declared, ctx: Session) -> dict[str, Any] | None:
        """The queue policy: one statement per declared topic delivering to this queue."""
        spec = res.spec
        assert isinstance(spec, QueueConfig)
        statements: list[dict[str, Any]] = []
        for topic_name, topic in ctx.config.resources.topics.items():
            delivers = any(
                (s.protocol == "sqs" and s.endpoint == res.name) or s.dead_letter_queue == res.name
                for s in topic.subscriptions
            )
            if not delivers:
                continue
            topic_arn = ctx.arn_of("topics", topic_name)
            statements.append(
                {
                    "Sid": "awsdSns" + re.sub(r"[^A-Za-z0-9]", "", topic_name.title()),
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": res.arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            )
        statements += spec.policy_statements
        if not statements:
            return None
        return {"Version": "2012-10-17", "Statement": statements}

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        found = await ctx.call_or_none(MISSING, "sqs", "get_queue_url", QueueName=res.physical)
        if found is None:
            return None
        url = found["QueueUrl"]
        attrs = await ctx.call_or_none(
            MISSING, "sqs", "get_queue_attributes", QueueUrl=url, AttributeNames=["All"]
        )
        if attrs is None:
            return None  # deleted between the two calls
        tags = await ctx.call("sqs", "list_queue_tags", QueueUrl=url)
        state = _state(attrs.get("Attributes", {}))
        state["tags"] = dict(tags.get("Tags", {}))
        return Observed(state, {"url": url})

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        attributes = _attributes(desired, set(desired))
        try:
            await ctx.call(
                "sqs",
                "create_queue",
                QueueName=res.physical,
                Attributes=attributes,
                tags=dict(desired["tags"]),
            )
        except Exception as exc:
            delay = recreate_delay(exc)
            if delay is not None:
                raise RetryAfter(
                    delay, "AWS refuses to create a queue within 60 s of deleting one by that name"
                ) from exc
            if error_code(exc) not in NAME_EXISTS:
                raise
            # It exists (created since the plan): the applier reads it back and adopts it only
            # when it is untagged or ours (`apply.py`, the ownership check).

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        url = observed.handle["url"]
        attributes = _attributes(desired, changed, observed.state)
        if attributes and "policy" in desired and not is_ignored("policy", res.spec.ignore):
            # Re-sent with every change: harmless on AWS, and moto drops a queue's policy on any
            # SetQueueAttributes call that does not carry it.
            attributes["Policy"] = json.dumps(desired["policy"])
        if attributes:
            await ctx.call("sqs", "set_queue_attributes", QueueUrl=url, Attributes=attributes)
        tags = tags_to_set(res, observed, desired)
        if tags:
            await ctx.call("sqs", "tag_queue", QueueUrl=url, Tags=tags)

    async def delete(self, ctx: Session, found: Found) -> None:
        url = found.handle.get("url")
        if url is None:
            located = await ctx.call_or_none(
                MISSING, "sqs", "get_queue_url", QueueName=found.physical
            )
            if located is None:
                return
            url = located["QueueUrl"]
        await ctx.call_or_none(MISSING, "sqs", "delete_queue", QueueUrl=url)

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {"MaxResults": 1000}
        while True:
            page = await ctx.call("sqs", "list_queues", **params)
            for url in page.get("QueueUrls", []):
                tags = await ctx.call_or_none(
                    MISSING | ACCESS_DENIED, "sqs", "list_queue_tags", QueueUrl=url
                )
                if tags is None or not owned_by(tags.get("Tags", {}), ctx.env):
                    continue
                name = url.rstrip("/").rsplit("/", 1)[-1]
                owned.append(Found("queues", name, self.arn(name, ctx), tags["Tags"], {"url": url}))
            token = page.get("NextToken")
            if not token:
                return owned
            params["NextToken"] = token


def _state(attrs: dict[str, str]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "fifo": attrs.get("FifoQueue") == "true",
        "content_based_deduplication": attrs.get("ContentBasedDeduplication") == "true",
    }
    for field, name in _INT_ATTRIBUTES.items():
        if name in attrs:
            state[field] = int(attrs[name])
    if attrs.get("RedrivePolicy"):
        redrive = json.loads(attrs["RedrivePolicy"])
        state["redrive"] = {
            "dead_letter_queue": redrive.get("deadLetterTargetArn"),
            "max_receive_count": int(redrive.get("maxReceiveCount", 0)),
        }
    if attrs.get("KmsMasterKeyId"):
        state["encryption"] = "kms"
        state["kms_key_id"] = attrs["KmsMasterKeyId"]
    else:
        state["encryption"] = "sqs" if attrs.get("SqsManagedSseEnabled") == "true" else "none"
    if attrs.get("Policy"):
        state["policy"] = json.loads(attrs["Policy"])
    return state


def _attributes(
    desired: dict[str, Any], fields: set[str], current: dict[str, Any] | None = None
) -> dict[str, str]:
    """SQS attribute strings for the `fields` of `desired` (`current`: the queue as it is)."""
    out: dict[str, str] = {}
    if desired.get("fifo") and "fifo" in fields:
        out["FifoQueue"] = "true"
    if "content_based_deduplication" in fields and "content_based_deduplication" in desired:
        out["ContentBasedDeduplication"] = str(desired["content_based_deduplication"]).lower()
    for field, name in _INT_ATTRIBUTES.items():
        if field in fields and field in desired:
            out[name] = str(desired[field])
    if "redrive" in fields and "redrive" in desired:
        redrive = desired["redrive"]
        out["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": redrive["dead_letter_queue"],
                "maxReceiveCount": str(redrive["max_receive_count"]),
            }
        )
    if ("encryption" in fields or "kms_key_id" in fields) and "encryption" in desired:
        encryption = desired["encryption"]
        if encryption == "kms":
            out["KmsMasterKeyId"] = desired["kms_key_id"]
        else:
            if current is not None and current.get("encryption") == "kms":
                out["KmsMasterKeyId"] = ""  # switching away from KMS
            out["SqsManagedSseEnabled"] = "true" if encryption == "sqs" else "false"
    if "policy" in fields and "policy" in desired:
        out["Policy"] = json.dumps(desired["policy"])
    return out


QUEUES = QueueKind(QueueConfig)
