"""The resources Kinesis readers use, in the reference registry (`daemon.config.references`):
a reader's `stream` and its archive's `bucket` name declared resources by logical name (or are
ARNs), so `check-config` reports an undeclared one, `awsd plan` shows who uses what, and the IAM
policy is scoped to them. So does `leases.table` when it names a declared table or an ARN (and a
declared one must have the lease key); any other name is a table of the reader's own, created on
demand, which needs only to be a valid table name.
"""

from __future__ import annotations

from daemon.config.loader import CROSS_CHECKS
from daemon.config.models import Config
from daemon.config.references import REFERENCES, ResourceRef, lease_table_problem
from daemon.config.resources import NAME_RULES


def lease_table(config: Config, reader: str) -> str:
    """A reader's `leases.table` as configured (a declared table's logical name, an ARN, or an
    AWS name), or the name of the table it owns by default."""
    return config.kinesis.readers[reader].leases.table or f"awsd-{config.env}-{reader}"


def lease_table_declared_or_external(config: Config, table: str | None) -> bool:
    """Whether a reader's `leases.table` names a table the reader must not create itself: a
    declared one (the reconciler's) or an ARN (someone else's)."""
    return table is not None and (table.startswith("arn:") or table in config.resources.tables)


def _references(config: Config) -> list[ResourceRef]:
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
        if reader.checkpoints.store == "dynamodb" and lease_table_declared_or_external(
            config, table
        ):
            assert table is not None
            refs.append(ResourceRef("tables", table, f"{path}.leases.table", user))
    return refs


def _check_lease_tables(config: Config) -> list[tuple[str, str]]:
    """A declared lease table needs the lease key; a table of the reader's own, a valid name;
    and no two readers (nor a reader and the reconciler) share one."""
    problems = []
    rule = NAME_RULES["tables"]
    users: dict[str, str] = {}
    if config.resources.lease_table:
        users[config.resources.lease_table] = "resources.lease_table"
    for name, reader in config.kinesis.readers.items():
        table = reader.leases.table
        if reader.checkpoints.store != "dynamodb" or table is None:
            continue
        path = f"kinesis.readers.{name}.leases.table"
        problem = lease_table_problem(config, table)
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
        elif not lease_table_declared_or_external(config, table) and not rule.pattern.match(table):
            problems.append(
                (
                    path,
                    f"{table!r} is neither a declared table ([resources.tables]) nor a valid "
                    f"DynamoDB table name ({rule.help}) nor a table ARN",
                )
            )
    return problems


REFERENCES.append(_references)
CROSS_CHECKS.append(_check_lease_tables)
