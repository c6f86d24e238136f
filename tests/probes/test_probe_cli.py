"""`awsd probe`'s conditions are the config's keys, and `--print-config` writes the very table
the daemon would check (parsed back here through the config's own models)."""

from __future__ import annotations

import tomllib

import pytest

from daemon.cli import main as cli
from daemon.cli.probe import parse_conditions
from daemon.config.probes import ProbesConfig


def test_cli_conditions_use_the_configs_keys_and_accept_the_short_forms():
    long = parse_conditions(["json_path.status=UP", "headers.content-type=json", "status=2xx"])
    short = parse_conditions(["json.status=UP", "header.content-type=json", "status=2xx"])
    assert (
        long
        == short
        == {
            "json_path": {"status": "UP"},
            "headers": {"content-type": "json"},
            "status": ["2xx"],
        }
    )
    assert parse_conditions(["json.a.b[0]=1"]) == {"json_path": {"a.b[0]": 1}}
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parse_conditions(["status"])


def test_print_config_writes_the_table_for_the_probe_just_run(
    capsys: pytest.CaptureFixture[str],
):
    args = [
        "probe",
        "tcp://127.0.0.1:9",  # nothing listens: a down result, printed on stderr
        "max_latency=500ms",
        "--timeout",
        "2s",
        "--print-config",
        "local-nine",
    ]
    assert cli.main(args) == 1
    out, err = capsys.readouterr()
    assert "tcp://127.0.0.1:9: DOWN" in err and "DOWN" not in out
    table = tomllib.loads(out)
    assert table == {
        "probes": {
            "endpoints": {
                "local-nine": {
                    "url": "tcp://127.0.0.1:9",
                    "timeout": "2s",
                    "conditions": {"max_latency": "500ms"},
                }
            }
        }
    }
    endpoint = ProbesConfig.model_validate(table["probes"]).endpoints["local-nine"]
    assert (endpoint.timeout, endpoint.conditions.max_latency) == (2.0, 0.5)


def test_print_config_keeps_http_settings_and_quotes_what_toml_must(
    capsys: pytest.CaptureFixture[str],
):
    from argparse import Namespace

    from daemon.cli.probe import config_table, endpoint_data

    args = Namespace(
        url="https://shop.example.com/health",
        conditions=["status=2xx,301", "json_path.$.checks[0].ok=true", "headers.x-ok=yes"],
        timeout=None,
        method="post",
        header=["Accept: application/json"],
        data='{"ping": 1}',
        no_follow=True,
        insecure=False,
        ca_file="/etc/ssl/private-ca.pem",
        ip_family="ip4",
        print_config="",
    )
    text = config_table(args, endpoint_data(args))
    endpoint = ProbesConfig.model_validate(tomllib.loads(text)["probes"]).endpoints[
        "shop-example-com"
    ]
    assert endpoint.method == "POST" and endpoint.body == '{"ping": 1}'
    assert endpoint.headers == {"Accept": "application/json"}
    assert not endpoint.follow_redirects and endpoint.ip_family == "ip4"
    assert endpoint.tls.ca_file == "/etc/ssl/private-ca.pem"
    assert endpoint.conditions.status == ["2xx", "301"]
    assert endpoint.conditions.json_path == {"$.checks[0].ok": True}
    assert endpoint.conditions.headers == {"x-ok": "yes"}
    assert endpoint.timeout == 10.0  # not given: the default, not written
    assert "timeout" not in text
