"""SNS topics: attributes, tags and subscriptions (sqs, lambda, http/https, email, sms).

Subscriptions are keyed by `protocol:endpoint` (a queue's ARN for sqs). A declared subscription
that is missing is created; its declared attributes (filter policy and scope, raw delivery,
dead-letter queue) are compared one by one. Subscriptions nobody declared are left alone: a
subscription cannot be tagged, so awsd cannot prove it made one.

A subscription waiting for confirmation (e-mail, http) is not subscribed again on every pass (that
would send the recipient a confirmation each time); its attributes are set once it is confirmed.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.base.fields import (
    Arn,
    KmsKeyRef,
    QueueRef,
    Section,
    host_problem,
    url_problem,
)
from daemon.resources.diff import Entries, Required, equal, is_ignored, join
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
    Session,
    owned_by,
    ownership_tags,
    tag_dict,
    tag_list,
    tags_to_set,
)

SubscriptionProtocol = Literal["sqs", "lambda", "http", "https", "email", "email-json", "sms"]
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class SubscriptionConfig(Section):
    """One subscription of a topic."""

    protocol: SubscriptionProtocol
    """Delivery protocol."""

    endpoint: str = Field(min_length=1)
    """Where to deliver: for `sqs` a declared queue's logical name or a queue ARN; for `lambda`
    a declared function's logical name (awsd adds the permission letting this topic invoke it)
    or a function ARN; for `http`/`https` a URL; for `email` an address; for `sms` a phone number
    in E.164 form (`+14155550100`)."""

    filter_policy: dict[str, Any] | None = None
    """SNS filter policy, for example `{ kind = ["alert"] }`."""

    filter_policy_scope: Literal["MessageAttributes", "MessageBody"] | None = None
    """What the filter policy looks at. Unset: AWS's default (message attributes)."""

    raw_delivery: bool | None = None
    """Deliver the message body as is instead of in the SNS JSON envelope (sqs, http, https)."""

    dead_letter_queue: QueueRef | None = None
    """Queue (logical name or ARN) for messages SNS could not deliver to this endpoint."""

    @model_validator(mode="after")
    def _endpoint_fits_protocol(self) -> SubscriptionConfig:
        p, e = self.protocol, self.endpoint
        if p in ("http", "https"):
            problem = url_problem(e, (p,))
            if problem:
                raise ValueError(f"a {p} subscription needs a {p}:// URL: {problem}")
        if p == "lambda" and e.startswith("arn:"):
            Arn.parse(e, "lambda")  # else a declared function's name
        if p == "sqs" and e.startswith("arn:"):
            Arn.parse(e, "sqs")
        elif p == "sqs" and not _QUEUE_NAME.match(e):
            raise ValueError(
                f"an sqs subscription needs a declared queue's name or an SQS ARN, not {e!r}"
            )
        if p in ("email", "email-json") and host_problem(e.rpartition("@")[2]):
            raise ValueError(f"an {p} subscription needs an e-mail address, not {e!r}")
        if p in ("email", "email-json") and "@" not in e:
            raise ValueError(f"an {p} subscription needs an e-mail address, not {e!r}")
        if p == "sms" and not _E164.match(e):
            raise ValueError(f"an sms subscription needs an E.164 phone number, not {e!r}")
        if self.raw_delivery and p not in ("sqs", "http", "https", "firehose"):
            raise ValueError(f"raw_delivery is not available for {p} subscriptions")
        return self


class TopicConfig(ResourceBase):
    """An SNS topic and its subscriptions."""

    fifo: bool = False
    """A FIFO topic (the `.fifo` suffix is added to the name when missing)."""

    content_based_deduplication: bool | None = None
    """FIFO only: deduplicate by a hash of the body when no deduplication id is given."""

    display_name: str | None = Field(default=None, max_length=100)
    """Display name, used as the sender of SMS and e-mail messages."""

    kms_key_id: KmsKeyRef | None = None
    """KMS key (id, ARN or alias, `alias/aws/sns` for the AWS managed key) for encryption at
    rest. Unset: not compared."""

    attributes: dict[str, str] = Field(default_factory=dict)
    """Other topic attributes by their AWS name (`SignatureVersion`, `TracingConfig`, ...)."""

    subscriptions: list[SubscriptionConfig] = Field(default_factory=list)
    """Subscriptions kept on the topic. Subscriptions that are not declared are left alone."""

    @model_validator(mode="after")
    def _fifo_only(self) -> TopicConfig:
        if self.content_based_deduplication is not None and not self.fifo:
            raise ValueError("content_based_deduplication needs fifo = true")
        keys = [(s.protocol, s.endpoint) for s in self.subscriptions]
        dupes = sorted({f"{p}:{e}" for p, e in keys if keys.count((p, e)) > 1})
        if dupes:
            raise ValueError(f"duplicate subscriptions: {', '.join(dupes)}")
        return self


MISSING = frozenset({"NotFound", "NotFoundException", "ResourceNotFoundException"})
PENDING = "PendingConfirmation"

_TOPIC_ATTRIBUTES = {
    "display_name": "DisplayName",
    "kms_key_id": "KmsMasterKeyId",
    "content_based_deduplication": "ContentBasedDeduplication",
}
_SUB_ATTRIBUTES = {
    "filter_policy": "FilterPolicy",
    "filter_policy_scope": "FilterPolicyScope",
    "raw_delivery": "RawMessageDelivery",
    "dead_letter_queue": "RedrivePolicy",
}


def subscription_key(protocol: str, endpoint: str) -> str:
    return f"{protocol}:{endpoint}"


class TopicKind(Kind[TopicConfig]):
    name = "topics"
    singular = "topic"
    name_rule = NameRule(
        re.compile(r"^[A-Za-z0-9_-]{1,256}(\.fifo)?$"),
        "1-256 letters, digits, '-' or '_' (plus '.fifo' for FIFO topics)",
    )
    service = "sns"
    tag_read_actions = ("sns:ListTagsForResource",)
    read_actions = (
        "sns:GetTopicAttributes",
        "sns:ListTagsForResource",
        "sns:ListSubscriptionsByTopic",
    )
    write_actions = (
        "sns:CreateTopic",
        "sns:SetTopicAttributes",
        "sns:TagResource",
        "sns:Subscribe",
    )
    unscoped_write_actions = ("sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes")
    delete_actions = ("sns:DeleteTopic",)
    list_actions = ("sns:ListTopics",)

    def finish_name(self, spec: TopicConfig, name: str) -> str:
        return name + ".fifo" if spec.fifo and not name.endswith(".fifo") else name

    def check_name(self, spec: TopicConfig, physical: str) -> str | None:
        if physical.endswith(".fifo") and not spec.fifo:
            return "the name ends in .fifo but fifo is not set"
        return None

    def references(self, name: str, spec: TopicConfig, all_declared: Any) -> list[ResourceRef]:
        refs = []
        for i, sub in enumerate(spec.subscriptions):
            base = f"resources.topics.{name}.subscriptions[{i}]"
            if sub.protocol in ("sqs", "lambda"):
                kind = "queues" if sub.protocol == "sqs" else "functions"
                refs.append(ResourceRef(kind, sub.endpoint, f"{base}.endpoint", f"topic.{name}"))
            if sub.dead_letter_queue:
                path = f"{base}.dead_letter_queue"
                refs.append(ResourceRef("queues", sub.dead_letter_queue, path, f"topic.{name}"))
        return refs

    def problems(self, declared: dict[str, TopicConfig], all_declared: Any) -> list[Problem]:
        """SNS delivers a FIFO topic only to FIFO queues, and a standard topic to standard ones."""
        problems = []
        for name, topic in declared.items():
            for i, sub in enumerate(topic.subscriptions):
                queue = all_declared.queues.get(sub.endpoint) if sub.protocol == "sqs" else None
                if queue is not None and queue.fifo != topic.fifo:
                    problems.append(
                        (
                            f"resources.topics.{name}.subscriptions[{i}].endpoint",
                            "a FIFO topic can only deliver to FIFO queues, and a standard topic "
                            "only to standard queues",
                        )
                    )
        return problems

    def arn(self, physical: str, ctx: Place) -> str:
        return f"arn:{ctx.partition}:sns:{ctx.region}:{ctx.account}:{physical}"

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, TopicConfig)
        out: dict[str, Any] = {"fifo": spec.fifo}
        for field in _TOPIC_ATTRIBUTES:
            value = getattr(spec, field)
            if value is not None:
                out[field] = value
        if spec.attributes:
            out["attributes"] = Entries(spec.attributes)
        subs = Entries()
        for sub in spec.subscriptions:
            subs[self._key(sub, ctx)] = self._sub_desired(sub, ctx)
        out["subscriptions"] = subs
        out["tags"] = Entries({**spec.tags, **ownership_tags(ctx.env)})
        return out

    def compared(self, res: Declared) -> set[str]:
        return super().compared(res) - {"fifo"}

    def _key(self, sub: SubscriptionConfig, ctx: Session) -> str:
        endpoint = sub.endpoint
        if sub.protocol in ("sqs", "lambda"):
            endpoint = ctx.arn_of("queues" if sub.protocol == "sqs" else "functions", endpoint)
        return subscription_key(sub.protocol, endpoint)

    def _sub_desired(self, sub: SubscriptionConfig, ctx: Session) -> Required:
        attrs = Required()
        for field in sorted(sub.model_fields_set & set(_SUB_ATTRIBUTES)):
            value = getattr(sub, field)
            if field == "dead_letter_queue" and value is not None:
                value = ctx.arn_of("queues", value)
            attrs[field] = value
        return attrs

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        got = await ctx.call_or_none(MISSING, "sns", "get_topic_attributes", TopicArn=res.arn)
        if got is None:
            return None
        attrs = got.get("Attributes", {})
        state: dict[str, Any] = {
            "fifo": attrs.get("FifoTopic") == "true",
            "display_name": attrs.get("DisplayName", ""),
            "kms_key_id": attrs.get("KmsMasterKeyId"),
            "content_based_deduplication": attrs.get("ContentBasedDeduplication") == "true",
            "attributes": dict(attrs),
        }
        tags = await ctx.call("sns", "list_tags_for_resource", ResourceArn=res.arn)
        state["tags"] = tag_dict(tags.get("Tags"))
        subs, handles = await self._read_subscriptions(ctx, res)
        state["subscriptions"] = subs
        return Observed(state, {"subscriptions": handles})

    async def _read_subscriptions(
        self, ctx: Session, res: Declared
    ) -> tuple[dict[str, Any], dict[str, str]]:
        wanted = self.desired(res, ctx)["subscriptions"]
        subs: dict[str, Any] = {}
        handles: dict[str, str] = {}
        params: dict[str, Any] = {"TopicArn": res.arn}
        while True:
            page = await ctx.call("sns", "list_subscriptions_by_topic", **params)
            for sub in page.get("Subscriptions", []):
                key = subscription_key(sub["Protocol"], sub["Endpoint"])
                if key not in wanted or key in subs:
                    continue
                arn = sub["SubscriptionArn"]
                handles[key] = arn
                if arn == PENDING:
                    # Unreadable until confirmed: take it as declared rather than resubscribe.
                    subs[key] = dict(wanted[key])
                    continue
                got = await ctx.call_or_none(
                    MISSING, "sns", "get_subscription_attributes", SubscriptionArn=arn
                )
                if got is not None:
                    subs[key] = _sub_state(got.get("Attributes", {}))
            token = page.get("NextToken")
            if not token:
                return subs, handles
            params["NextToken"] = token

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        attributes = {
            name: _text(desired[f]) for f, name in _TOPIC_ATTRIBUTES.items() if f in desired
        }
        if desired["fifo"]:
            attributes["FifoTopic"] = "true"
        attributes.update(desired.get("attributes", {}))
        await ctx.call(
            "sns",
            "create_topic",
            Name=res.physical,
            Attributes=attributes,
            Tags=tag_list(dict(desired["tags"])),
        )

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        for field, name in _TOPIC_ATTRIBUTES.items():
            if field in changed:
                await self._set_topic_attribute(ctx, res, name, _text(desired[field]))
        if "attributes" in changed:
            have = observed.state.get("attributes", {})
            for name, value in desired["attributes"].items():
                if have.get(name) != value:
                    await self._set_topic_attribute(ctx, res, name, value)
        tags = tags_to_set(res, observed, desired)
        if tags:
            await ctx.call("sns", "tag_resource", ResourceArn=res.arn, Tags=tag_list(tags))
        if "subscriptions" in changed:
            await self._update_subscriptions(ctx, res, observed, desired)

    async def _set_topic_attribute(
        self, ctx: Session, res: Declared, name: str, value: str
    ) -> None:
        await ctx.call(
            "sns",
            "set_topic_attributes",
            TopicArn=res.arn,
            AttributeName=name,
            AttributeValue=value,
        )

    async def _update_subscriptions(
        self, ctx: Session, res: Declared, observed: Observed, desired: dict[str, Any]
    ) -> None:
        have = observed.state.get("subscriptions", {})
        handles: dict[str, str] = observed.handle.get("subscriptions", {})
        for key, want in desired["subscriptions"].items():
            if key not in have:
                protocol, endpoint = key.split(":", 1)
                await ctx.call(
                    "sns",
                    "subscribe",
                    TopicArn=res.arn,
                    Protocol=protocol,
                    Endpoint=endpoint,
                    Attributes={_SUB_ATTRIBUTES[f]: _sub_text(f, v) for f, v in want.items()},
                    ReturnSubscriptionArn=True,
                )
                continue
            for field, value in want.items():
                path = join(join("subscriptions", key), field)
                if equal(value, have[key].get(field)) or is_ignored(path, res.spec.ignore):
                    continue
                await ctx.call(
                    "sns",
                    "set_subscription_attributes",
                    SubscriptionArn=handles[key],
                    AttributeName=_SUB_ATTRIBUTES[field],
                    AttributeValue=_sub_text(field, value),
                )

    async def delete(self, ctx: Session, found: Found) -> None:
        await ctx.call_or_none(MISSING, "sns", "delete_topic", TopicArn=found.arn)

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {}
        while True:
            page = await ctx.call("sns", "list_topics", **params)
            for topic in page.get("Topics", []):
                arn = topic["TopicArn"]
                tags = await ctx.call_or_none(
                    MISSING | ACCESS_DENIED, "sns", "list_tags_for_resource", ResourceArn=arn
                )
                found_tags = tag_dict((tags or {}).get("Tags"))
                if owned_by(found_tags, ctx.env):
                    owned.append(Found("topics", arn.rsplit(":", 1)[-1], arn, found_tags))
            token = page.get("NextToken")
            if not token:
                return owned
            params["NextToken"] = token


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _sub_text(field: str, value: Any) -> str:
    if value is None:
        return ""
    if field == "filter_policy":
        return json.dumps(value)
    if field == "dead_letter_queue":
        return json.dumps({"deadLetterTargetArn": value})
    return _text(value)


def _sub_state(attrs: dict[str, str]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "raw_delivery": attrs.get("RawMessageDelivery") == "true",
        "filter_policy_scope": attrs.get("FilterPolicyScope")
        if attrs.get("FilterPolicy")
        else None,
        "filter_policy": json.loads(attrs["FilterPolicy"]) if attrs.get("FilterPolicy") else None,
        "dead_letter_queue": None,
    }
    if attrs.get("RedrivePolicy"):
        state["dead_letter_queue"] = json.loads(attrs["RedrivePolicy"]).get("deadLetterTargetArn")
    return state


TOPICS = TopicKind(TopicConfig)
