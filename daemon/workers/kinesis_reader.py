"""Kinesis readers: one worker per `[kinesis.readers.<name>]` (worker `kinesis:<name>`).

The engine is `daemon.kinesis.reader.KinesisReader` (shard scheduling in
`daemon.kinesis.scheduler`); this module says what the kind contributes: the stream, archive
bucket and lease table it names, the lease-table rules, the IAM actions it needs, its outbox use
(a `forward` handler).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from daemon.config.handlers import HandlerUse, handler_problems, handler_references
from daemon.config.kinesis import KinesisReaderConfig, lease_table, lease_table_declared_or_external
from daemon.config.models import Config
from daemon.config.resources import KIND as RESOURCE_KIND
from daemon.config.resources import lease_table_problem
from daemon.core.iam import Grant, Scope
from daemon.handlers import needs
from daemon.resources.kind import Problem, ResourceRef
from daemon.worker import Worker, WorkerKind, WorkerSpec, fingerprint

if TYPE_CHECKING:
    from daemon.services import Services

READ_ACTIONS = (
    "kinesis:DescribeStreamSummary",
    "kinesis:ListShards",
    "kinesis:GetShardIterator",
    "kinesis:GetRecords",
)
LEASE_ACTIONS = (
    "dynamodb:DescribeTable",
    "dynamodb:Scan",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
)


def _build(name: str, cfg: KinesisReaderConfig, services: Services) -> Worker:
    from daemon.kinesis.reader import KinesisReader  # noqa: PLC0415 - loaded when a config reads

    return KinesisReader(name, cfg, services)


def specs(config: Config) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            name=f"kinesis:{name}",
            kind="kinesis_reader",
            fingerprint=fingerprint(cfg, config.aws, config.env, config.runtime.state_dir),
            build=partial(_build, name, cfg),
        )
        for name, cfg in config.kinesis.readers.items()
    ]


def handlers(config: Config) -> list[HandlerUse]:
    return [
        (f"kinesis.readers.{name}.handler", f"kinesis:{name}", reader.handler)
        for name, reader in config.kinesis.readers.items()
        if reader.handler is not None
    ]


def _shared_table(config: Config, table: str | None) -> bool:
    return lease_table_declared_or_external(table, config.resources.tables)


def references(config: Config) -> list[ResourceRef]:
    """A reader's stream and archive bucket name declared resources (or are ARNs), and so does
    `leases.table` when it names a declared table or an ARN; any other table name is the
    reader's own, created on demand."""
    refs = []
    for name, reader in config.kinesis.readers.items():
        user = f"kinesis:{name}"
        path = f"kinesis.readers.{name}"
        refs.append(ResourceRef("streams", reader.stream, f"{path}.stream", user))
        if reader.archive is not None:
            refs.append(
                ResourceRef("buckets", reader.archive.bucket, f"{path}.archive.bucket", user)
            )
        table = reader.leases.table
        if reader.checkpoints.store == "dynamodb" and _shared_table(config, table):
            assert table is not None
            refs.append(ResourceRef("tables", table, f"{path}.leases.table", user))
    return refs + handler_references(handlers(config))


def lease_table_problems(config: Config) -> list[Problem]:
    """A declared lease table needs the lease key; a table of the reader's own, a valid name;
    and no two readers (nor a reader and the reconciler) share one."""
    problems = []
    rule = RESOURCE_KIND["tables"].name_rule
    users: dict[str, str] = {}
    if config.resources.lease_table:
        users[config.resources.lease_table] = "resources.lease_table"
    for name, reader in config.kinesis.readers.items():
        table = reader.leases.table
        if reader.checkpoints.store != "dynamodb" or table is None:
            continue
        path = f"kinesis.readers.{name}.leases.table"
        problem = lease_table_problem(config.resources, table)
        if table in users:  # every item of the table is taken for one of the reader's shards
            problems.append(
                (
                    path,
                    f"table {table!r} is already the lease table of {users[table]}: one per user",
                )
            )
        users.setdefault(table, path)
        if problem:
            problems.append(
                (path, f"names table {table!r} ([resources.tables.{table}]): {problem}")
            )
        elif not _shared_table(config, table) and not rule.pattern.match(table):
            problems.append(
                (
                    path,
                    f"{table!r} is neither a declared table ([resources.tables]) nor a valid "
                    f"DynamoDB table name ({rule.help}) nor a table ARN",
                )
            )
    return problems


def checks(config: Config) -> list[Problem]:
    return lease_table_problems(config) + handler_problems(handlers(config))


def grants(config: Config, scope: Scope) -> list[Grant]:
    """What each reader needs: its stream, its archive bucket, its lease table, and where its
    handler forwards to."""
    found: list[Grant] = []
    for name, reader in config.kinesis.readers.items():
        who = f"kinesis:{name}"
        found.append(Grant(who, READ_ACTIONS, (scope.arn_of("streams", reader.stream),)))
        if reader.archive is not None:
            bucket = scope.arn_of("buckets", reader.archive.bucket)
            found.append(Grant(who, ("s3:PutObject",), (f"{bucket}/*",)))
        if reader.checkpoints.store == "dynamodb":
            found.append(_lease_grant(config, scope, name, reader))
    return found + needs.grants(handlers(config), scope)


def _lease_grant(config: Config, scope: Scope, name: str, reader: KinesisReaderConfig) -> Grant:
    """The lease table's items; creating (and tagging) it only when it is the reader's own."""
    ref = reader.leases.table
    if _shared_table(config, ref):
        assert ref is not None
        return Grant(f"kinesis:{name}", LEASE_ACTIONS, (scope.arn_of("tables", ref),))
    table = lease_table(reader, name, config.env)
    arn = f"arn:{scope.partition}:dynamodb:{scope.region}:{scope.account}:table/{table}"
    actions = ("dynamodb:CreateTable", "dynamodb:TagResource", *LEASE_ACTIONS)
    return Grant(f"kinesis:{name}", actions, (arn,))


KIND = WorkerKind(
    name="kinesis_reader",
    section="kinesis.readers",
    uses=lambda config: bool(config.kinesis.readers),
    specs=specs,
    references=references,
    checks=(checks,),
    grants=grants,
    sends=lambda config: needs.sends(handlers(config)),
)
