"""Resource declarations: names, references and malformed input give clear errors (exit 78)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.cli.main import main
from daemon.config import ConfigError
from daemon.config.models import Config
from daemon.config.references import used_by
from daemon.resources.kind import ResourceRef
from daemon.worker import Catalog, WorkerKind
from daemon.workers import CATALOG, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "awsd.toml"
    path.write_text('env = "dev"\n' + text)
    return path


# (case, TOML after `env = "dev"`, text the error must contain)
MALFORMED: list[tuple[str, str, str]] = [
    (
        "unknown-kind",
        "[resources.queus.q]\n",
        "resources.queus: unknown key (did you mean 'queues'?)",
    ),
    (
        "unknown-attribute",
        "[resources.queues.q]\nvisibilty_timeout = 30\n",
        "resources.queues.q.visibilty_timeout: unknown key (did you mean 'visibility_timeout'?)",
    ),
    (
        "out-of-range",
        "[resources.queues.q]\nvisibility_timeout = 50000\n",
        "resources.queues.q.visibility_timeout",
    ),
    (
        "undeclared-dlq",
        '[resources.queues.q]\nredrive = { dead_letter_queue = "dlq", max_receive_count = 3 }\n',
        "resources.queues.q.redrive.dead_letter_queue: names queue 'dlq', which is not declared "
        "under [resources.queues] (declared: q)",
    ),
    (
        "undeclared-subscribed-queue",
        '[resources.topics.t]\nsubscriptions = [{ protocol = "sqs", endpoint = "nope" }]\n',
        "resources.topics.t.subscriptions[0].endpoint: names queue 'nope'",
    ),
    (
        "undeclared-alarm-topic",
        '[resources.alarms.a]\nmetric = "m"\nthreshold = 1\nalarm_actions = ["alerts"]\n',
        "resources.alarms.a.alarm_actions[0]: names topic 'alerts'",
    ),
    (
        "arn-of-the-wrong-service",
        '[resources.alarms.a]\nmetric = "m"\nthreshold = 1\n'
        'alarm_actions = ["arn:aws:sqs:eu-west-1:123456789012:q"]\n',
        "is not an ARN of sns",
    ),
    (
        "invalid-bucket-name",
        "[resources.buckets.My_Bucket]\n",
        "resources.buckets.My_Bucket: AWS name 'dev-My_Bucket' is not a valid bucket name",
    ),
    (
        "invalid-queue-name-from-template",
        '[resources]\nname_template = "{env}.{name}"\n[resources.queues.q]\n',
        "AWS name 'dev.q' is not a valid queue name",
    ),
    ("template-without-name", '[resources]\nname_template = "{env}"\n', "must contain {name}"),
    (
        "unknown-placeholder",
        '[resources.queues.q]\nname = "{stage}-q"\n',
        "resources.queues.q.name: unknown placeholder {stage}",
    ),
    (
        "two-declarations-one-name",
        '[resources.queues.a]\nname = "same"\n[resources.queues.b]\nname = "same"\n',
        "resources.queues.b: has the same AWS name 'same' as resources.queues.a",
    ),
    (
        "fifo-topic-to-standard-queue",
        "[resources.topics.t]\nfifo = true\n"
        'subscriptions = [{ protocol = "sqs", endpoint = "q" }]\n[resources.queues.q]\n',
        "a FIFO topic can only deliver to FIFO queues",
    ),
    (
        "fifo-suffix-without-fifo",
        '[resources.queues.q]\nname = "q.fifo"\n',
        "the name ends in .fifo but fifo is not set",
    ),
    (
        "reserved-tag",
        '[resources.queues.q]\ntags = { "managed-by" = "me" }\n',
        "tag 'managed-by' is reserved",
    ),
    (
        "unknown-ignore-path",
        '[resources.queues.q]\nignore = ["visiblity_timeout"]\n',
        "ignore path 'visiblity_timeout' names no attribute of this resource",
    ),
    (
        "bad-sms-number",
        '[resources.topics.t]\nsubscriptions = [{ protocol = "sms", endpoint = "0123" }]\n',
        "an sms subscription needs an E.164 phone number",
    ),
    (
        "http-subscription-with-a-non-url",
        "[resources.topics.t]\n"
        'subscriptions = [{ protocol = "https", endpoint = "example.com" }]\n',
        "a https subscription needs a https:// URL",
    ),
    (
        "duplicate-subscriptions",
        "[resources.topics.t]\nsubscriptions = [\n"
        '  { protocol = "email", endpoint = "a@b.c" },\n'
        '  { protocol = "email", endpoint = "a@b.c" },\n]\n',
        "duplicate subscriptions: email:a@b.c",
    ),
    (
        "kms-key-without-kms",
        '[resources.queues.q]\nkms_key_id = "alias/x"\n',
        'kms_key_id needs encryption = "kms"',
    ),
    (
        "bad-bucket-policy-json",
        "[resources.buckets.logs]\npolicy = '{\"Statement\": [}'\n",
        "resources.buckets.logs.policy: not valid JSON",
    ),
    (
        "policy-without-statement",
        '[resources.buckets.logs]\npolicy = \'{"Version": "2012-10-17"}\'\n',
        "a policy document needs a 'Statement' list",
    ),
    (
        "retention-not-offered",
        "[resources.log_groups.g]\nretention_days = 10\n",
        "CloudWatch Logs does not offer 10 days",
    ),
    (
        "provisioned-table-without-capacity",
        '[resources.tables.t]\npartition_key = "k"\nbilling = "provisioned"\n',
        'billing = "provisioned" needs read_capacity and write_capacity',
    ),
    (
        "table-without-partition-key",
        "[resources.tables.t]\n",
        "resources.tables.t.partition_key: required but not set",
    ),
    (
        "alarm-period",
        '[resources.alarms.a]\nmetric = "m"\nthreshold = 1\nperiod = 45\n',
        "period must be 10, 30 or a multiple of 60 seconds",
    ),
    (
        "shards-on-demand",
        '[resources.streams.s]\nmode = "on-demand"\nshards = 2\n',
        "shards applies to provisioned streams only",
    ),
    (
        "stream-retention-too-long",
        "[resources.streams.s]\nretention_hours = 9000\n",
        "resources.streams.s.retention_hours",
    ),
    ("bad-mode", '[resources]\nmode = "fix"\n', "resources.mode"),
    (
        "a-bucket-logging-to-itself",
        '[resources.buckets.logs]\nlogging = { target_bucket = "logs" }\n',
        "a bucket should not log to itself",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_declarations_are_clear_errors_with_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, text: str, expected: str
):
    path = write(tmp_path, text)
    assert main(["plan", "--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err
    assert str(path) in err


def test_every_problem_is_reported_at_once(tmp_path: Path):
    path = write(
        tmp_path,
        '[resources.queues.q]\nredrive = { dead_letter_queue = "x", max_receive_count = 1 }\n'
        "[resources.buckets.Bad]\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(caught.value.issues) == 2


def test_names_follow_the_template_with_env_and_fifo_suffix(tmp_path: Path):
    path = write(
        tmp_path,
        '[resources]\nname_template = "awsd-{env}-{name}"\n'
        "[resources.queues.jobs]\nfifo = true\n"
        '[resources.buckets.archive]\nname = "archive-{account}-{region}"\n',
    )
    res = load_config(path).config.resources
    assert res.physical_name("queues", "jobs", env="dev") == "awsd-dev-jobs.fifo"
    assert (
        res.physical_name("buckets", "archive", env="dev", region="eu-west-1", account="42")
        == "archive-42-eu-west-1"
    )


def test_one_base_file_serves_several_environments_without_collisions(tmp_path: Path):
    (tmp_path / "base.toml").write_text("[resources.queues.jobs]\nvisibility_timeout = 60\n")
    names = {}
    for env in ("dev", "prod"):
        (tmp_path / f"{env}.toml").write_text(f'extends = "base.toml"\nenv = "{env}"\n')
        res = load_config(tmp_path / f"{env}.toml").config.resources
        names[env] = res.physical_name("queues", "jobs", env=env)
    assert names == {"dev": "dev-jobs", "prod": "prod-jobs"}


def test_a_worker_kinds_references_are_checked(tmp_path: Path):
    def poller_refs(config: Config) -> list[ResourceRef]:
        queue = config.custom["poller"].options.get("queue") if "poller" in config.custom else None
        return [ResourceRef("queues", queue, "custom.poller.options.queue", "custom:poller")] if (
            queue
        ) else []  # fmt: skip

    poller = WorkerKind(
        name="poller", section="custom", uses=bool, specs=lambda _: [], references=poller_refs
    )
    catalog = Catalog([*CATALOG.kinds, poller])
    text = (
        '[custom.poller]\nentrypoint = "tests.support.workers:idle"\n'
        'options = { queue = "orders" }\n'
    )
    with pytest.raises(ConfigError) as caught:
        catalog.load(write(tmp_path, text))
    assert "custom.poller.options.queue: names queue 'orders'" in caught.value.render()

    config = catalog.load(write(tmp_path, text + "[resources.queues.orders]\n")).config
    assert used_by(catalog.references(config))[("queues", "orders")] == ("custom:poller",)
    external = text.replace('"orders"', '"arn:aws:sqs:eu-west-1:123456789012:theirs"')
    config = catalog.load(write(tmp_path, external)).config
    assert [r.external for r in catalog.references(config)] == [True]


def test_the_shipped_configs_declare_valid_resources():
    for path in sorted(Path("configs").glob("*.toml")):
        if path.name != "base.toml":
            load_config(path)


def test_every_resource_field_is_documented(subtests: Any = None):
    from daemon.config.resources import ResourcesConfig

    for name, field in ResourcesConfig.model_fields.items():
        assert field.description, name
