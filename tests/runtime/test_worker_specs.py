"""What a reload restarts: worker fingerprints follow everything a worker was built from."""

from __future__ import annotations

from typing import Any

from daemon.workers import CATALOG, load_config
from tests.conftest import ConfigFactory


def fingerprints(configs: ConfigFactory, overrides: dict[str, Any]) -> dict[str, str]:
    base: dict[str, Any] = {
        "resources": {"queues": {"orders": {}, "other": {}}},
        "sqs": {"orders": {"queue": "orders", "handler": {"kind": "log"}}},
        "custom": {"w": {"entrypoint": "tests.support.workers:idle"}},
    }
    path = configs.write({**base, **overrides})
    return {s.name: s.fingerprint for s in CATALOG.specs(load_config(path, {}).config)}


def test_renaming_a_used_resource_restarts_only_its_users(offline_configs: ConfigFactory):
    before = fingerprints(offline_configs, {})
    renamed = fingerprints(
        offline_configs,
        {"resources": {"name_template": "x-{env}-{name}", "queues": {"orders": {}, "other": {}}}},
    )
    own_name = fingerprints(
        offline_configs,
        {"resources": {"queues": {"orders": {"name": "legacy-orders"}, "other": {}}}},
    )
    unrelated = fingerprints(
        offline_configs,
        {"resources": {"queues": {"orders": {}, "other": {"name": "elsewhere"}}}},
    )
    assert renamed["sqs:orders"] != before["sqs:orders"]
    assert own_name["sqs:orders"] != before["sqs:orders"]
    assert unrelated["sqs:orders"] == before["sqs:orders"]  # not a resource it uses
    for changed in (renamed, own_name, unrelated):
        assert changed["custom:w"] == before["custom:w"]  # names no resource: untouched
