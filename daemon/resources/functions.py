"""Lambda functions: code, runtime settings, environment, execution role, reserved
concurrency, queue event sources, the permissions that let declared topics invoke them, tags;
and, as their own kinds, a log group with retention and an Errors/Throttles alarm.

Code comes from a directory or a `.zip` file (`function_code.py`: packaged reproducibly) and is
compared by the `CodeSha256` Lambda reports, so an unchanged directory never shows as drift.

The environment is compared as a whole (Lambda replaces it as a whole). Values from `secrets`,
and those whose names say secret (`DB_PASSWORD`, `API_TOKEN`: `daemon.base.redact`), are held as
`Masked` values: compared by content, shown as `***` in plans, logs and events.

The execution role is declared inline (`role = { statements = [...] }`) and made by awsd under
the IAM path `/awsd/`, named after the function: trusted by Lambda, with one inline policy
`awsd` granting what the function needs to run (writing to its own log group, reading the queues
that feed it) plus the declared statements; or it is an existing role's ARN (`role = "arn:..."`),
which awsd uses and never changes. IAM is eventually consistent: Lambda refuses a role for a few
seconds after its creation, and the create waits (`RetryAfter`) rather than fail.

The log group (`/aws/lambda/<name>`, `log_retention_days`) and the alarms (`alarm = { topic =
"alerts", errors = 1 }`) are derived resources (`Kind.derived`): a `log_groups` and `alarms`
entry each, so the kinds that own those resources plan, write, grant and prune them.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.base.awserrors import error_code
from daemon.base.fields import Section
from daemon.base.redact import Masked, is_secret_name
from daemon.resources.alarms import AlarmConfig
from daemon.resources.diff import Entries, Required
from daemon.resources.function_code import archive, check_code, digest, resolve
from daemon.resources.function_parts import (
    delete_role,
    read_permissions,
    read_role,
    read_sources,
    write_permissions,
    write_role,
    write_sources,
)
from daemon.resources.kind import (
    ACCESS_DENIED,
    Declared,
    Derived,
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
from daemon.resources.log_groups import LogGroupConfig

Runtime = Literal[
    "python3.9", "python3.10", "python3.11", "python3.12", "python3.13",
    "nodejs18.x", "nodejs20.x", "nodejs22.x", "java17", "java21", "dotnet8",
    "ruby3.3", "provided.al2", "provided.al2023",
]  # fmt: skip

MISSING = frozenset({"ResourceNotFoundException"})
ROLE_NOT_READY = "cannot be assumed by Lambda"
ROLE_WAIT = 10.0  # seconds: how long IAM typically takes before Lambda accepts a new role
UPDATE_BUDGET = 120.0
_CONFIG_FIELDS = {
    "runtime": "Runtime",
    "handler": "Handler",
    "memory": "MemorySize",
    "timeout": "Timeout",
    "description": "Description",
}


class RoleConfig(Section):
    """The execution role awsd makes for a function."""

    statements: list[dict[str, Any]] = Field(default_factory=list)
    """IAM policy statements besides the generated ones (its log group, its queues), for what
    the code calls: `[{ Effect = "Allow", Action = ["s3:GetObject"], Resource = ["arn:..."] }]`."""

    managed_policies: list[str] = Field(default_factory=list)
    """ARNs of managed policies attached to the role."""


class SourceConfig(Section):
    """A queue feeding the function (an event source mapping)."""

    queue: str = Field(min_length=1)
    """A declared queue's logical name, or a queue ARN."""

    batch_size: int = Field(default=10, ge=1, le=10000)
    """Most messages per invocation."""

    batching_window: int | None = Field(default=None, ge=0, le=300)
    """Seconds Lambda gathers messages before invoking (needed for a batch_size above 10)."""

    enabled: bool = True
    """Whether Lambda polls the queue."""

    max_concurrency: int | None = Field(default=None, ge=2, le=1000)
    """Most concurrent invocations this source causes."""

    report_batch_item_failures: bool = False
    """The function returns the ids of the messages that failed; only those are retried."""

    @model_validator(mode="after")
    def _window_for_big_batches(self) -> SourceConfig:
        if self.batch_size > 10 and not self.batching_window:
            raise ValueError("a batch_size above 10 needs a batching_window of at least 1 s")
        return self


class FunctionAlarm(Section):
    """`alarm = { topic = "alerts", errors = 1 }`: alarms on the function's Errors and
    Throttles metrics, notifying a topic."""

    topic: str = Field(min_length=1)
    """The topic notified (a declared topic's logical name, or a topic ARN), on alarm and on
    recovery."""

    errors: int | None = Field(default=1, ge=1)
    """Errors within a period that raise the alarm; unset: no errors alarm."""

    throttles: int | None = Field(default=1, ge=1)
    """Throttled invocations within a period that raise the alarm; unset: no throttles alarm."""

    period: int = Field(default=300, ge=60)
    """Seconds per period (a multiple of 60)."""

    @model_validator(mode="after")
    def _something(self) -> FunctionAlarm:
        if self.errors is None and self.throttles is None:
            raise ValueError("set errors, throttles or both")
        if self.period % 60:
            raise ValueError("period must be a multiple of 60 seconds")
        return self


class FunctionConfig(ResourceBase):
    """A Lambda function."""

    code: str = Field(min_length=1)
    """A directory (zipped reproducibly), a single file (zipped alone), a `.zip` file, or
    `python:package.module` (an importable module or package, wherever it is installed).
    Relative paths are from the directory awsd runs in (systemd: its WorkingDirectory)."""

    runtime: Runtime
    """The Lambda runtime."""

    handler: str = Field(min_length=1, max_length=128)
    """The entry point (`app.handler` for Python: module `app`, function `handler`)."""

    memory: int = Field(default=128, ge=128, le=10240)
    """MB of memory (CPU grows with it)."""

    timeout: int = Field(default=3, ge=1, le=900)
    """Seconds an invocation may run."""

    architecture: Literal["x86_64", "arm64"] = "x86_64"
    """Instruction set (`arm64`: Graviton, cheaper per second)."""

    description: str | None = Field(default=None, max_length=256)
    """Free text."""

    environment: dict[str, str] = Field(default_factory=dict)
    """Environment variables (values may use `${VAR}` interpolation). Those whose names say
    secret (`*_PASSWORD`, `*_TOKEN`, ...) are masked in plans and logs."""

    secrets: dict[str, str] = Field(default_factory=dict)
    """More environment variables, always masked in plans, logs and `check-config` (give them
    from the environment: `{ API_KEY = "${API_KEY}" }`)."""

    role: RoleConfig | str = Field(default_factory=RoleConfig)
    """The execution role: a table (awsd makes the role, see `RoleConfig`), or the ARN of an
    existing role, used as it is."""

    reserved_concurrency: int | None = Field(default=None, ge=0, le=1000)
    """Concurrent executions reserved (and capped); 0 stops every invocation."""

    log_retention_days: int | None = 30
    """Retention of its log group `/aws/lambda/<name>`, which awsd declares (as
    `log_groups.<function>.logs`); 0 keeps logs forever; unset: no log group declared (Lambda
    creates one without retention when the role may)."""

    alarm: FunctionAlarm | None = None
    """Errors/Throttles alarms to a topic: `{ topic = "alerts", errors = 1 }` declares
    `alarms.<function>.errors` and `alarms.<function>.throttles`."""

    sources: list[SourceConfig] = Field(default_factory=list)
    """Queues feeding the function. Mappings not declared here are left alone."""

    compare_exempt = frozenset({"name", "ignore", "log_retention_days", "alarm", "secrets"})

    @model_validator(mode="after")
    def _consistent(self) -> FunctionConfig:
        both = sorted(set(self.environment) & set(self.secrets))
        if both:
            raise ValueError(f"in both environment and secrets: {', '.join(both)}")
        reserved = sorted(k for k in {*self.environment, *self.secrets} if k.startswith("AWS_"))
        if reserved:
            raise ValueError(f"Lambda reserves AWS_* variables: {', '.join(reserved)}")
        if isinstance(self.role, str) and not re.match(
            r"^arn:aws[\w-]*:iam::\d{12}:role/", self.role
        ):
            raise ValueError(f"role must be a table or an IAM role ARN, not {self.role!r}")
        queues = [s.queue for s in self.sources]
        dupes = sorted({q for q in queues if queues.count(q) > 1})
        if dupes:
            raise ValueError(f"duplicate sources: {', '.join(dupes)}")
        return self

    def declared(self) -> set[str]:
        fields = super().declared()
        if "secrets" in self.model_fields_set:
            fields.add("environment")
        return fields


def role_name(physical: str) -> str:
    """The execution role's name (IAM allows 64 characters)."""
    return f"{physical[:59]}-role"


def invoke_sid(topic: str) -> str:
    """The statement id of the permission letting a declared topic invoke the function."""
    return "awsdSns" + re.sub(r"[^A-Za-z0-9]", "", topic.title())


class FunctionKind(Kind[FunctionConfig]):
    name = "functions"
    singular = "function"
    name_rule = NameRule(re.compile(r"^[A-Za-z0-9_-]{1,64}$"), "1-64 letters, digits, '-' or '_'")
    service = "lambda"
    always_compared = frozenset({"tags", "code", "role", "permissions"})
    tag_read_actions = ("lambda:ListTags",)
    read_actions = (
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
        "lambda:GetPolicy",
        "lambda:ListTags",
        "iam:GetRole",
        "iam:GetRolePolicy",
        "iam:ListAttachedRolePolicies",
    )
    unscoped_read_actions = ("lambda:ListEventSourceMappings",)
    write_actions = (
        "lambda:CreateFunction",
        "lambda:UpdateFunctionCode",
        "lambda:UpdateFunctionConfiguration",
        "lambda:PutFunctionConcurrency",
        "lambda:DeleteFunctionConcurrency",
        "lambda:AddPermission",
        "lambda:RemovePermission",
        "lambda:TagResource",
        "iam:CreateRole",
        "iam:TagRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:PassRole",
    )
    unscoped_write_actions = (
        "lambda:CreateEventSourceMapping",
        "lambda:UpdateEventSourceMapping",
        "lambda:GetEventSourceMapping",
    )
    delete_actions = (
        "lambda:DeleteFunction",
        "lambda:DeleteEventSourceMapping",
        "iam:DeleteRole",
        "iam:DeleteRolePolicy",
        "iam:DetachRolePolicy",
        "iam:ListAttachedRolePolicies",
    )
    list_actions = ("lambda:ListFunctions",)

    def arn(self, physical: str, ctx: Place) -> str:
        return f"arn:{ctx.partition}:lambda:{ctx.region}:{ctx.account}:function:{physical}"

    def arn_patterns(self, physical: str, ctx: Place) -> list[str]:
        # The function, its versions and aliases, and the role awsd makes for it.
        arn = self.arn(physical, ctx)
        role = f"arn:{ctx.partition}:iam::{ctx.account}:role/awsd/{role_name(physical)}"
        # Event source mappings are named by ids Lambda assigns.
        mappings = f"arn:{ctx.partition}:lambda:{ctx.region}:{ctx.account}:event-source-mapping:*"
        return [arn, f"{arn}:*", role, mappings]

    def references(self, name: str, spec: FunctionConfig, all_declared: Any) -> list[ResourceRef]:
        user = f"function.{name}"
        return [
            ResourceRef(
                "queues", source.queue, f"resources.functions.{name}.sources[{i}].queue", user
            )
            for i, source in enumerate(spec.sources)
        ]

    def problems(self, declared: dict[str, FunctionConfig], all_declared: Any) -> list[Problem]:
        problems = []
        for name, spec in declared.items():
            reason = check_code(spec.code)
            if reason:
                problems.append((f"resources.functions.{name}.code", reason))
            for i, source in enumerate(spec.sources):
                queue = all_declared.queues.get(source.queue)
                if queue is not None and queue.fifo and source.batching_window:
                    problems.append(
                        (
                            f"resources.functions.{name}.sources[{i}].batching_window",
                            "a FIFO queue takes no batching window",
                        )
                    )
        return problems

    def derived(self, name: str, spec: FunctionConfig, name_template: str) -> list[Derived]:
        """Its log group (`<name>.logs`) and alarms (`<name>.errors`, `<name>.throttles`)."""
        out: list[Derived] = []
        own = (spec.name or name_template).replace("{name}", name)
        if spec.log_retention_days is not None:
            group = LogGroupConfig(
                name=f"/aws/lambda/{own}", retention_days=spec.log_retention_days, tags=spec.tags
            )
            out.append(("log_groups", f"{name}.logs", group))
        if spec.alarm is not None:
            for metric, threshold in (
                ("Errors", spec.alarm.errors),
                ("Throttles", spec.alarm.throttles),
            ):
                if threshold is None:
                    continue
                alarm = AlarmConfig(
                    name=f"{own}-{metric.lower()}",
                    metric=metric,
                    namespace="AWS/Lambda",
                    function=name,
                    statistic="Sum",
                    comparison=">=",
                    threshold=threshold,
                    period=spec.alarm.period,
                    evaluation_periods=1,
                    treat_missing_data="notBreaching",
                    description=f"awsd: {metric.lower()} of function {name}",
                    alarm_actions=[spec.alarm.topic],
                    ok_actions=[spec.alarm.topic],
                    tags=spec.tags,
                )
                out.append(("alarms", f"{name}.{metric.lower()}", alarm))
        return out

    # --- desired state ------------------------------------------------------------------------

    def desired(self, res: Declared, ctx: Session) -> dict[str, Any]:
        spec = res.spec
        assert isinstance(spec, FunctionConfig)
        out: dict[str, Any] = {
            "code": digest(spec.code).sha256,
            "runtime": spec.runtime,
            "handler": spec.handler,
            "memory": spec.memory,
            "timeout": spec.timeout,
            "architecture": spec.architecture,
            "environment": environment_state(spec.environment, spec.secrets),
        }
        if spec.description is not None:
            out["description"] = spec.description
        if spec.reserved_concurrency is not None:
            out["reserved_concurrency"] = spec.reserved_concurrency
        if isinstance(spec.role, str):
            out["role"] = Entries(arn=spec.role)
        else:
            out["role"] = Entries(
                arn=self.own_role_arn(res, ctx),
                policy=self.role_policy(res, ctx),
                managed_policies=sorted(spec.role.managed_policies),
            )
        sources = Entries()
        for source in spec.sources:
            sources[ctx.arn_of("queues", source.queue)] = Required(
                {
                    "batch_size": source.batch_size,
                    "batching_window": source.batching_window or 0,
                    "enabled": source.enabled,
                    "max_concurrency": source.max_concurrency,
                    "report_batch_item_failures": source.report_batch_item_failures,
                }
            )
        out["sources"] = sources
        out["permissions"] = self.permissions(res, ctx)
        out["tags"] = Entries({**spec.tags, **ownership_tags(ctx.env)})
        return out

    def own_role_arn(self, res: Declared, ctx: Place) -> str:
        return f"arn:{ctx.partition}:iam::{ctx.account}:role/awsd/{role_name(res.physical)}"

    def role_policy(self, res: Declared, ctx: Session) -> dict[str, Any]:
        """The inline policy of the role awsd makes: its log group, its queues, and the
        declared statements."""
        spec = res.spec
        assert isinstance(spec, FunctionConfig) and not isinstance(spec.role, str)
        place = f"{ctx.partition}:logs:{ctx.region}:{ctx.account}"
        group = f"arn:{place}:log-group:/aws/lambda/{res.physical}"
        statements: list[dict[str, Any]] = [
            {
                "Sid": "awsdLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{group}:*",
            }
        ]
        if spec.log_retention_days is None:  # no declared group: Lambda creates it
            statements[0]["Action"] = ["logs:CreateLogGroup", *statements[0]["Action"]]
            statements[0]["Resource"] = [group, f"{group}:*"]
        queues = sorted({ctx.arn_of("queues", s.queue) for s in spec.sources})
        if queues:
            statements.append(
                {
                    "Sid": "awsdSources",
                    "Effect": "Allow",
                    "Action": [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:GetQueueAttributes",
                        "sqs:ChangeMessageVisibility",
                    ],
                    "Resource": queues,
                }
            )
        statements += spec.role.statements
        return {"Version": "2012-10-17", "Statement": statements}

    def permissions(self, res: Declared, ctx: Session) -> Entries:
        """Who may invoke the function: each declared topic subscribing it (`sns.amazonaws.com`
        from that topic's ARN only). Permissions someone else added are left alone."""
        out = Entries()
        for topic_name, topic in ctx.config.resources.topics.items():
            if any(
                s.protocol == "lambda" and s.endpoint in (res.name, res.arn)
                for s in topic.subscriptions
            ):
                out[invoke_sid(topic_name)] = Required(
                    {
                        "principal": "sns.amazonaws.com",
                        "source_arn": ctx.arn_of("topics", topic_name),
                    }
                )
        return out

    # --- reading ------------------------------------------------------------------------------

    async def read(self, ctx: Session, res: Declared) -> Observed | None:
        got = await ctx.call_or_none(MISSING, "lambda", "get_function", FunctionName=res.physical)
        if got is None:
            return None
        config = got.get("Configuration", {})
        spec = res.spec
        assert isinstance(spec, FunctionConfig)
        variables = (config.get("Environment") or {}).get("Variables") or {}
        state: dict[str, Any] = {
            "code": config.get("CodeSha256"),
            "runtime": config.get("Runtime"),
            "handler": config.get("Handler"),
            "memory": config.get("MemorySize"),
            "timeout": config.get("Timeout"),
            "architecture": (config.get("Architectures") or ["x86_64"])[0],
            "description": config.get("Description", ""),
            "environment": environment_state(
                {k: v for k, v in variables.items() if k not in spec.secrets},
                {k: v for k, v in variables.items() if k in spec.secrets},
            ),
            "role": {"arn": config.get("Role")},
            "reserved_concurrency": (got.get("Concurrency") or {}).get(
                "ReservedConcurrentExecutions"
            ),
            "tags": dict(got.get("Tags") or {}),
        }
        if not isinstance(spec.role, str):
            state["role"].update(await read_role(ctx, role_name(res.physical)))
        state["sources"], mappings = await read_sources(ctx, res.physical)
        state["permissions"] = await read_permissions(ctx, res.physical)
        return Observed(
            state,
            {"mappings": mappings, "role": config.get("Role")},
            outputs={"state": str(config.get("State") or "Active")},
            arn=config.get("FunctionArn"),
        )

    # --- writing ------------------------------------------------------------------------------

    async def create(self, ctx: Session, res: Declared, desired: dict[str, Any]) -> None:
        spec = res.spec
        assert isinstance(spec, FunctionConfig)
        if not isinstance(spec.role, str):
            await write_role(
                ctx, role_name(res.physical), desired["role"], None, dict(desired["tags"])
            )
        code = await asyncio.to_thread(archive, resolve(spec.code))
        params: dict[str, Any] = {
            "FunctionName": res.physical,
            "Runtime": desired["runtime"],
            "Role": desired["role"]["arn"],
            "Handler": desired["handler"],
            "Code": {"ZipFile": code},
            "Timeout": desired["timeout"],
            "MemorySize": desired["memory"],
            "Architectures": [desired["architecture"]],
            "Environment": {"Variables": variables(spec)},
            "Tags": dict(desired["tags"]),
        }
        if "description" in desired:
            params["Description"] = desired["description"]
        try:
            await ctx.call("lambda", "create_function", **params)
        except Exception as exc:
            if ROLE_NOT_READY in str(exc):
                raise RetryAfter(
                    ROLE_WAIT, "Lambda does not accept the new role yet (IAM)"
                ) from exc
            if error_code(exc) != "ResourceConflictException":  # it exists: the applier adopts
                raise
        # Concurrency, sources and permissions follow through `update`.

    async def update(
        self,
        ctx: Session,
        res: Declared,
        observed: Observed,
        desired: dict[str, Any],
        changed: set[str],
    ) -> None:
        spec = res.spec
        assert isinstance(spec, FunctionConfig)
        name = res.physical
        role = observed.state.get("role") or {}
        if "role" in changed and not isinstance(spec.role, str):
            await write_role(ctx, role_name(name), desired["role"], role, dict(desired["tags"]))
        if changed & {"code", "architecture"}:
            code = await asyncio.to_thread(archive, resolve(spec.code))
            await ctx.call(
                "lambda",
                "update_function_code",
                FunctionName=name,
                ZipFile=code,
                Architectures=[desired["architecture"]],
            )
            await self._settled(ctx, name)
        settings = {
            _CONFIG_FIELDS[f]: desired[f] for f in changed & set(_CONFIG_FIELDS) if f in desired
        }
        if "environment" in changed:
            settings["Environment"] = {"Variables": variables(spec)}
        if "role" in changed and role.get("arn") != desired["role"]["arn"]:
            settings["Role"] = desired["role"]["arn"]
        if settings:
            await ctx.call("lambda", "update_function_configuration", FunctionName=name, **settings)
            await self._settled(ctx, name)
        if "reserved_concurrency" in changed:
            await self._concurrency(ctx, name, desired.get("reserved_concurrency"))
        if "sources" in changed:
            await write_sources(ctx, res, observed, desired)
        if "permissions" in changed:
            await write_permissions(ctx, res, observed, desired)
        tags = tags_to_set(res, observed, desired)
        if tags:
            arn = observed.arn or res.arn
            await ctx.call("lambda", "tag_resource", Resource=arn, Tags=tags)

    async def _concurrency(self, ctx: Session, name: str, value: int | None) -> None:
        if value is None:
            await ctx.call("lambda", "delete_function_concurrency", FunctionName=name)
        else:
            await ctx.call(
                "lambda",
                "put_function_concurrency",
                FunctionName=name,
                ReservedConcurrentExecutions=value,
            )

    async def _settled(self, ctx: Session, name: str) -> None:
        """Wait while Lambda applies an update: the next one would be refused meanwhile
        (ResourceConflictException)."""

        async def done() -> bool:
            got = await ctx.call("lambda", "get_function_configuration", FunctionName=name)
            return got.get("LastUpdateStatus") != "InProgress"

        await ctx.poll(done, what=f"function {name} finishing its update", budget=UPDATE_BUDGET)

    async def delete(self, ctx: Session, found: Found) -> None:
        mappings = await ctx.call_or_none(
            MISSING, "lambda", "list_event_source_mappings", FunctionName=found.physical
        )
        for mapping in (mappings or {}).get("EventSourceMappings", []):
            await ctx.call_or_none(
                MISSING, "lambda", "delete_event_source_mapping", UUID=mapping["UUID"]
            )
        await ctx.call_or_none(MISSING, "lambda", "delete_function", FunctionName=found.physical)
        role = found.handle.get("role") or ""
        if role.endswith(f":role/awsd/{role_name(found.physical)}"):
            await delete_role(ctx, role_name(found.physical))

    async def discover(self, ctx: Session) -> list[Found]:
        owned: list[Found] = []
        params: dict[str, Any] = {}
        while True:
            page = await ctx.call("lambda", "list_functions", **params)
            for function in page.get("Functions", []):
                arn = function["FunctionArn"]
                tags = await ctx.call_or_none(
                    MISSING | ACCESS_DENIED, "lambda", "list_tags", Resource=arn
                )
                found_tags = dict((tags or {}).get("Tags") or {})
                if owned_by(found_tags, ctx.env):
                    handle = {"role": function.get("Role")}
                    owned.append(
                        Found("functions", function["FunctionName"], arn, found_tags, handle)
                    )
            if not page.get("NextMarker"):
                return owned
            params["Marker"] = page["NextMarker"]


def environment_state(plain: dict[str, str], secret: dict[str, str]) -> dict[str, Any]:
    """The environment as compared: secret values (and secret-named ones) `Masked`."""
    out: dict[str, Any] = {k: Masked(v) if is_secret_name(k) else v for k, v in plain.items()}
    out.update((k, Masked(v)) for k, v in secret.items())
    return out


def variables(spec: FunctionConfig) -> dict[str, str]:
    """The environment Lambda is given."""
    return {**spec.environment, **spec.secrets}


FUNCTIONS = FunctionKind(FunctionConfig)
