"""A Kinesis reader's lease table as a reference like any other: a declared table's logical name
(checked for the lease key, resolved through the one resolver, created by the reconciler and
waited for by the reader), a table ARN, or the AWS name of a table of the reader's own."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.workers import CATALOG
from tests.support import kinesis as k
from tests.support.observe import wait_until

ACCOUNT = "123456789012"
FLEET = {"store": "dynamodb", "every_records": 10, "every_seconds": 1}


def reader(table: str | None, stream: str = "s") -> dict[str, Any]:
    leases: dict[str, Any] = {"failover_time": 1.0}
    if table is not None:
        leases["table"] = table
    return {
        "stream": stream,
        "handler": {"kind": "python", "entrypoint": "tests.support.kinesis:collect"},
        "idle_interval": 0.05,
        "retry_max": 0.5,
        "checkpoints": FLEET,
        "leases": leases,
    }


def resources(**tables: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "off", "streams": {"s": {}}, "tables": tables}


def load(offline_configs: Any, table: str | None, **tables: dict[str, Any]) -> Any:
    from daemon.workers import load_config

    data = {
        "aws": {"region": "eu-west-1"},
        "kinesis": {"readers": {"r": reader(table)}},
        "resources": resources(**tables),
    }
    return load_config(offline_configs.write(data, health=False)).config


def failure(offline_configs: Any, table: str | None, **tables: dict[str, Any]) -> str:
    from daemon.config import ConfigError

    with pytest.raises(ConfigError) as failed:
        load(offline_configs, table, **tables)
    return failed.value.render()


class TestConfig:
    def test_a_declared_table_is_a_reference_the_reconciler_knows_the_reader_uses(
        self, offline_configs: Any
    ):
        from daemon.config.references import used_by
        from daemon.workers import CATALOG

        config = load(offline_configs, "leases", leases={"partition_key": "lease_key"})
        assert used_by(CATALOG.references(config))[("tables", "leases")] == ("kinesis:r",)

    def test_a_declared_table_without_the_lease_key_names_the_field(self, offline_configs: Any):
        text = failure(offline_configs, "leases", leases={"partition_key": "id"})
        assert "kinesis.readers.r.leases.table: names table 'leases'" in text
        assert 'needs partition_key = "lease_key"' in text and "it has partition_key = 'id'" in text

    def test_a_sort_key_is_refused_too(self, offline_configs: Any):
        tables = {"leases": {"partition_key": "lease_key", "sort_key": "at"}}
        text = failure(offline_configs, "leases", **tables)
        assert "kinesis.readers.r.leases.table" in text and "sort_key = 'at'" in text

    def test_a_table_is_not_shared_with_the_reconcilers_lease(self, offline_configs: Any):
        from daemon.config import ConfigError
        from daemon.workers import load_config

        res = {**resources(leases={"partition_key": "lease_key"}), "lease_table": "leases"}
        data = {"kinesis": {"readers": {"r": reader("leases")}}, "resources": res}
        with pytest.raises(ConfigError) as failed:
            load_config(offline_configs.write(data, health=False))
        assert (
            "kinesis.readers.r.leases.table: table 'leases' is already the lease table of "
            "resources.lease_table" in failed.value.render()
        )

    def test_an_undeclared_name_is_the_readers_own_table_if_aws_would_accept_it(
        self, offline_configs: Any
    ):
        from daemon.config.references import used_by
        from daemon.workers import CATALOG

        config = load(offline_configs, "my-leases")  # as before: created by the reader
        assert ("tables", "my-leases") not in used_by(CATALOG.references(config))
        text = failure(offline_configs, "ab")
        assert "kinesis.readers.r.leases.table: 'ab' is neither a declared table" in text

    def test_an_arn_must_be_dynamodbs(self, offline_configs: Any):
        load(offline_configs, f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/theirs")
        text = failure(offline_configs, "arn:aws:sqs:eu-west-1:1:q")
        assert "kinesis.readers.r.leases.table: 'arn:aws:sqs:eu-west-1:1:q' is not an ARN" in text


class TestPolicy:
    def grant(self, offline_configs: Any, table: str | None, **tables: Any) -> dict[str, Any]:
        document = CATALOG.policy(load(offline_configs, table, **tables), account=ACCOUNT)
        (statement,) = [s for s in document["Statement"] if "dynamodb:Scan" in s["Action"]]
        return statement

    def test_a_declared_table_is_granted_by_its_physical_name_and_never_created(
        self, offline_configs: Any
    ):
        tables = {"leases": {"name": "fleet-{env}-leases", "partition_key": "lease_key"}}
        statement = self.grant(offline_configs, "leases", **tables)
        assert statement["Resource"] in (
            f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/fleet-test-leases",
            [f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/fleet-test-leases"],
        )
        assert "dynamodb:CreateTable" not in statement["Action"]

    def test_the_readers_own_table_may_be_created(self, offline_configs: Any):
        statement = self.grant(offline_configs, None)
        assert statement["Resource"] in (
            f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/awsd-test-r",
            [f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/awsd-test-r"],
        )
        assert "dynamodb:CreateTable" in statement["Action"]


async def test_table_names_resolve_in_the_one_resolver(tmp_path: Any, moto_endpoint: str):
    config = k.reader_config(
        tmp_path,
        moto_endpoint,
        {"r": reader("leases")},
        resources=resources(leases={"name": "lt-{env}", "partition_key": "lease_key"}),
    )
    r = k.Reader(config)
    try:
        targets = r.services.targets
        assert await targets.aws_name("tables", "leases") == "lt-test"
        arn = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/theirs"
        assert await targets.aws_name("tables", arn) == "theirs"
        assert await targets.aws_name("tables", "own-table") == "own-table"
    finally:
        await r.stop()


async def test_a_reader_waits_for_its_declared_table_then_reads(
    tmp_path: Any, boto: Any, moto_endpoint: str
):
    stream, table = k.stream_name(), k.stream_name("leases")
    kinesis = boto("kinesis")
    k.create_stream(kinesis, stream, 2)
    produced = k.keyed(50)
    k.put(kinesis, stream, produced)
    declared = {
        "mode": "off",  # nobody creates the table but this test, standing in for the reconciler
        "streams": {"s": {"name": stream}},
        "tables": {"leases": {"name": table, "partition_key": "lease_key"}},
    }
    config = k.reader_config(tmp_path, moto_endpoint, {"r": reader("leases")}, resources=declared)
    r = await k.Reader(config).start()
    try:
        worker = r.worker("r")
        await wait_until(lambda: "does not exist" in (worker.last_error or ""))
        db = boto("dynamodb")
        assert table not in db.list_tables()["TableNames"]  # the reader did not create it
        db.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "lease_key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "lease_key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        await wait_until(lambda: len(k.SEEN[stream]) >= len(produced))
        assert r.worker("r").table == table
    finally:
        await r.stop()
    assert sorted(rec.text or "" for rec in k.SEEN[stream]) == sorted(
        d.decode() for _, d in produced
    )
    leases = db.scan(TableName=table)["Items"]
    assert {item["lease_key"]["S"] for item in leases} == {
        "shardId-000000000000",
        "shardId-000000000001",
    }
