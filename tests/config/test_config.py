"""Config loading: overlays, overrides, interpolation, selection, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from daemon.cli import main as cli
from daemon.config import ConfigError, select_config_file
from daemon.config.errors import EX_CONFIG
from daemon.config.models import Config
from daemon.workers import load_config
from tests.support.proc import REPO, awsd_cli


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return [str(issue) for issue in caught.value.issues]


class TestOverlays:
    def test_three_level_chain_deep_merges_tables_and_replaces_the_rest(self, tmp_path: Path):
        write(
            tmp_path,
            "base.toml",
            '[aws]\nregion = "eu-west-1"\nmax_attempts = 3\n'
            '[log]\nlevel = "warning"\n[custom.a]\nentrypoint = "tests.support.workers:idle"\n'
            'options = { x = [1, 2], y = "base" }\n',
        )
        write(
            tmp_path,
            "mid.toml",
            'extends = "base.toml"\n[aws]\nmax_attempts = 7\n[custom.a]\noptions = { x = [3] }\n',
        )
        top = write(
            tmp_path, "top.toml", 'extends = "mid.toml"\nenv = "prod"\n[log]\nformat = "json"\n'
        )
        loaded = load_config(top, {})
        cfg = loaded.config
        assert cfg.env == "prod"
        assert cfg.aws.region == "eu-west-1"
        assert cfg.aws.max_attempts == 7
        assert (cfg.log.level, cfg.log.format) == ("warning", "json")
        # inline tables are tables too: merged; arrays replace
        assert cfg.custom["a"].options == {"x": [3], "y": "base"}
        assert [p.name for p in loaded.files] == ["top.toml", "mid.toml", "base.toml"]

    def test_extends_list_applies_parents_in_order(self, tmp_path: Path):
        write(tmp_path, "one.toml", '[aws]\nregion = "eu-west-1"\nmax_attempts = 2\n')
        write(tmp_path, "two.toml", "[aws]\nmax_attempts = 4\n")
        top = write(tmp_path, "top.toml", 'extends = ["one.toml", "two.toml"]\nenv = "x"\n')
        cfg = load_config(top, {}).config
        assert (cfg.aws.region, cfg.aws.max_attempts) == ("eu-west-1", 4)

    def test_shipped_environments_all_validate(self):
        for env in ("local", "dev", "prod", "pi"):
            loaded = load_config(REPO / "configs" / f"{env}.toml", {})
            assert loaded.config.env == env

    def test_error_in_base_names_the_base_file(self, tmp_path: Path):
        write(tmp_path, "base.toml", "[aws]\nmax_attempts = 0\n")
        top = write(tmp_path, "top.toml", 'extends = "base.toml"\nenv = "x"\n')
        [error] = errors_of(top)
        assert error.startswith(str(tmp_path / "base.toml")) and "aws.max_attempts" in error


class TestEnvironment:
    def test_overrides_keep_toml_types_and_create_tables(self, tmp_path: Path):
        top = write(tmp_path, "c.toml", 'env = "x"\n[aws]\nregion = "eu-west-1"\n')
        environ = {
            "AWSD__AWS__MAX_ATTEMPTS": "9",
            "AWSD__AWS__LOCAL": "true",
            "AWSD__LOG__LEVEL": "debug",
            "AWSD__RUNTIME__SHUTDOWN_TIMEOUT": "2.5",
            "AWSD__CUSTOM__W__ENTRYPOINT": "tests.support.workers:idle",
            "AWSD__CUSTOM__W__OPTIONS": '{ tag = "t", n = [1, 2] }',
            "AWSD__AWS__PROFILE": '"quoted profile"',
            "AWSD__AWS__REGION": "eu-west-1",
        }
        cfg = load_config(top, environ).config
        assert cfg.aws.max_attempts == 9 and cfg.aws.local is True
        assert cfg.log.level == "debug" and cfg.runtime.shutdown_timeout == 2.5
        assert cfg.custom["w"].options == {"tag": "t", "n": [1, 2]}
        assert (cfg.aws.profile, cfg.aws.region) == ("quoted profile", "eu-west-1")

    def test_bad_override_names_the_variable(self, tmp_path: Path):
        top = write(tmp_path, "c.toml", 'env = "x"\n')
        [error] = errors_of(top, {"AWSD__AWS__MAX_ATTEMPTS": "many"})
        assert error.startswith("environment AWSD__AWS__MAX_ATTEMPTS: aws.max_attempts:")

    def test_override_into_a_scalar_is_refused(self, tmp_path: Path):
        top = write(tmp_path, "c.toml", 'env = "x"\n')
        [error] = errors_of(top, {"AWSD__ENV__NAME": "y"})
        assert "environment AWSD__ENV__NAME: env: is not a table" in error

    def test_interpolation_with_defaults_and_escapes(self, tmp_path: Path):
        top = write(
            tmp_path,
            "c.toml",
            'env = "${STAGE}"\n[runtime]\nstate_dir = "${BASE:-/srv}/awsd/$${literal}"\n',
        )
        cfg = load_config(top, {"STAGE": "dev"}).config
        assert cfg.env == "dev"
        assert cfg.runtime.state_dir == "/srv/awsd/${literal}"
        assert (
            load_config(top, {"STAGE": "dev", "BASE": "/x"}).config.runtime.state_dir
            == "/x/awsd/${literal}"
        )

    def test_missing_variable_is_an_error_with_its_place(self, tmp_path: Path):
        top = write(tmp_path, "c.toml", 'env = "x"\n[aws]\nprofile = "${NOPE}"\n')
        [error] = errors_of(top)
        assert f"{top}: aws.profile: environment variable NOPE is not set" in error


class TestSelection:
    def test_env_name_looks_in_the_config_dir(self, tmp_path: Path):
        write(tmp_path, "stage.toml", 'env = "stage"\n')
        assert select_config_file(env="stage", config_dir=str(tmp_path)) == tmp_path / "stage.toml"
        assert (
            select_config_file(environ={"AWSD_ENV": "stage", "AWSD_CONFIG_DIR": str(tmp_path)})
            == tmp_path / "stage.toml"
        )

    def test_unknown_environment_lists_the_known_ones(self, tmp_path: Path):
        write(tmp_path, "a.toml", 'env = "a"\n')
        write(tmp_path, "base.toml", "")
        with pytest.raises(ConfigError) as caught:
            select_config_file(env="prdo", config_dir=str(tmp_path))
        assert "unknown environment 'prdo'" in str(caught.value)
        assert "(known: a)" in str(caught.value)

    def test_config_version_follows_content_not_layout(self, tmp_path: Path):
        a = write(tmp_path, "a.toml", 'env = "x"\n[aws]\nregion = "eu-west-1"\n')
        b = write(
            tmp_path,
            "b.toml",
            'env="x"  # same content, other layout\n[log]\n'
            'level="info"\n[aws]\nregion="eu-west-1"\n',
        )
        assert load_config(a, {}).version == load_config(b, {}).version
        c = write(tmp_path, "c.toml", 'env = "x"\n[aws]\nregion = "eu-west-2"\n')
        assert load_config(c, {}).version != load_config(a, {}).version


def _all_models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _walk(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _all_models(arg, seen)


def _walk(annotation: Any) -> list[Any]:
    out = [annotation]
    for arg in getattr(annotation, "__args__", ()):
        out += _walk(arg)
    for meta in getattr(annotation, "__metadata__", ()):
        out += _walk(meta)
    return out


def test_every_config_field_is_documented_and_forbids_unknown_keys():
    from daemon.config.handlers import LogHandlerConfig, PythonHandlerConfig

    models: set[type[BaseModel]] = {LogHandlerConfig, PythonHandlerConfig}
    _all_models(Config, models)
    assert len(models) >= 5
    for model in models:
        assert model.model_config.get("extra") == "forbid", model
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


# (file content, expected text in the error) - each must give exit 78 and name what is wrong.
MALFORMED: list[tuple[str, bytes | str, str]] = [
    ("unknown-top-key", 'env = "x"\nregoin = "eu"\n', "regoin: unknown key"),
    (
        "unknown-nested-key",
        'env = "x"\n[aws]\nregoin = "eu-west-1"\n',
        "aws.regoin: unknown key (did you mean 'region'?)",
    ),
    ("unknown-section", 'env = "x"\n[awz]\nregion = "x"\n', "awz: unknown key"),
    ("wrong-type-int", 'env = "x"\n[aws]\nmax_attempts = "five"\n', "aws.max_attempts"),
    ("wrong-type-bool", 'env = "x"\n[aws]\nlocal = "maybe"\n', "aws.local"),
    ("wrong-type-table", 'env = "x"\naws = 5\n', "aws:"),
    ("out-of-range", 'env = "x"\n[aws]\nmax_attempts = 99\n', "less than or equal to 20"),
    (
        "negative-timeout",
        'env = "x"\n[runtime]\nshutdown_timeout = -1\n',
        "runtime.shutdown_timeout",
    ),
    ("bad-choice", 'env = "x"\n[log]\nlevel = "loud"\n', "log.level"),
    ("bad-region", 'env = "x"\n[aws]\nregion = "mars"\n', "aws.region"),
    ("bad-url", 'env = "x"\n[aws]\nendpoint_url = "localhost:4566"\n', "http:// or https://"),
    ("bad-service-endpoint", 'env = "x"\n[aws.endpoints]\nsqx = "http://x"\n', "aws.endpoints.sqx"),
    ("bad-port", 'env = "x"\n[health]\nport = 70000\n', "health.port"),
    ("missing-env", '[aws]\nregion = "eu-west-1"\n', "env: required but not set"),
    ("bad-env-name", 'env = "Prod Env"\n', "env"),
    (
        "backoff-order",
        'env = "x"\n[runtime]\nrestart_backoff = 10\nrestart_backoff_max = 1\n',
        "restart_backoff_max must be at least restart_backoff",
    ),
    (
        "bad-entrypoint-format",
        'env = "x"\n[custom.a]\nentrypoint = "not a path"\n',
        "custom.a.entrypoint",
    ),
    (
        "entrypoint-missing-module",
        'env = "x"\n[custom.a]\nentrypoint = "nope_mod:run"\n',
        "custom.a.entrypoint: cannot import 'nope_mod'",
    ),
    (
        "entrypoint-missing-attr",
        'env = "x"\n[custom.a]\nentrypoint = "tests.support.workers:nope"\n',
        "has no attribute 'nope'",
    ),
    ("bad-worker-name", 'env = "x"\n[custom."bad name!"]\nentrypoint = "a:b"\n', "custom"),
    (
        "missing-required-nested",
        'env = "x"\n[custom.a]\noptions = {}\n',
        "custom.a.entrypoint: required but not set",
    ),
    ("bad-toml-syntax", 'env = "x"\n[aws\nregion = 1\n', "invalid TOML"),
    ("bad-toml-duplicate-key", 'env = "x"\nenv = "y"\n', "invalid TOML"),
    ("bad-toml-unterminated", 'env = "x\n', "invalid TOML"),
    ("empty-file", "", "file is empty"),
    ("whitespace-only", "  \n\n  \t\n", "file is empty"),
    ("binary-garbage", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8 text"),
    ("nul-bytes", 'env = "x"\x00\n', "NUL bytes"),
    ("extends-wrong-type", 'extends = 5\nenv = "x"\n', "extends: must be a file name"),
    ("extends-missing-file", 'extends = "nowhere.toml"\nenv = "x"\n', "extends: file not found"),
    ("undefined-variable", 'env = "${UNSET_VAR_FOR_TEST}"\n', "UNSET_VAR_FOR_TEST is not set"),
    (
        "malformed-variable",
        'env = "x"\n[aws]\nprofile = "${oops"\n',
        "malformed variable reference",
    ),
    ("list-instead-of-table", 'env = "x"\ncustom = [1, 2]\n', "custom"),
]


@pytest.mark.parametrize(("name", "content", "expected"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_gives_a_clear_error_and_exit_78(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | str,
    expected: str,
):
    path = tmp_path / f"{name}.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code = cli.main(["check-config", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == EX_CONFIG
    assert expected in err, err
    assert str(path) in err
    assert "Traceback" not in err


def test_more_than_thirty_malformed_cases():
    assert len(MALFORMED) + 4 >= 30  # plus cycle, directory, missing file, unknown env below


def test_extends_cycle_is_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write(tmp_path, "a.toml", 'extends = "b.toml"\nenv = "x"\n')
    write(tmp_path, "b.toml", 'extends = "c.toml"\n')
    write(tmp_path, "c.toml", 'extends = "a.toml"\n')
    assert cli.main(["check-config", "-c", str(tmp_path / "a.toml")]) == EX_CONFIG
    assert "extends cycle: a.toml -> b.toml -> c.toml -> a.toml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--config", "/nonexistent/awsd.toml"], "/nonexistent/awsd.toml: file not found"),
        (["--config", "/"], "is a directory"),
        (["--env", "nosuchenv", "--config-dir", "configs"], "unknown environment 'nosuchenv'"),
        (["--env", "Bad Name"], "invalid environment name"),
    ],
)
def test_selection_errors_exit_78(
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.chdir(REPO)
    assert cli.main(["check-config", *args]) == EX_CONFIG
    assert expected in capsys.readouterr().err


@pytest.mark.slow
def test_real_process_check_config_exits_78_naming_the_field(tmp_path: Path):
    bad = write(tmp_path, "bad.toml", 'env = "x"\n[aws]\nmax_attempts = "x"\n')
    for command in ("check-config", "run"):
        proc = awsd_cli(command, "--config", str(bad))
        assert proc.returncode == EX_CONFIG, proc.stderr
        assert f"{bad}: aws.max_attempts: Input should be a valid integer" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


def test_check_config_prints_the_resolved_config_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = write(
        tmp_path,
        "c.toml",
        'env = "x"\n[aws]\n'
        'endpoint_url = "https://user:hunter2pass@proxy.example"\n'
        '[custom.w]\nentrypoint = "tests.support.workers:idle"\n'
        'options = { api_token = "tok-123456789", region = "eu" }\n',
    )
    assert cli.main(["check-config", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out and "config_version" in out
    assert "hunter2pass" not in out and "tok-123456789" not in out
    assert '"region": "eu"' in out


def test_schema_is_json_schema_with_descriptions(capsys: pytest.CaptureFixture[str]):
    import json

    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "awsd configuration"
    assert "description" in schema["$defs"]["AwsConfig"]["properties"]["region"]
    assert "extends" in schema["properties"]


# --- no traceback, whatever the input ---------------------------------------------------------

scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False),
)
keys = st.sampled_from(
    [
        "env",
        "aws",
        "log",
        "health",
        "runtime",
        "custom",
        "region",
        "level",
        "port",
        "local",
        "entrypoint",
        "options",
        "x",
        "extends",
        "max_attempts",
    ]
)
documents = st.recursive(
    st.dictionaries(keys, scalars, max_size=4),
    lambda children: st.dictionaries(
        keys, st.one_of(scalars, children, st.lists(scalars, max_size=3)), max_size=4
    ),
    max_leaves=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=documents)
def test_random_toml_documents_never_raise_anything_but_config_error(tmp_path: Path, doc: Any):
    import tomli_w

    path = tmp_path / "fuzz.toml"
    path.write_text(tomli_w.dumps(doc))
    try:
        load_config(path, {})
    except ConfigError as exc:
        assert exc.issues and all(str(i) for i in exc.issues)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_random_text_never_raises_anything_but_config_error(tmp_path: Path, text: str):
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path, {})
    except ConfigError as exc:
        assert exc.issues


def test_docs_configuration_reference_is_generated_from_the_models():
    from daemon.config.reference import BEGIN, END, render_reference

    text = (REPO / "docs/configuration-reference.md").read_text()
    block = text[text.index(BEGIN) : text.index(END) + len(END) + 1]
    assert block == render_reference(), "docs/configuration-reference.md is stale: run `make docs`"


def test_a_stream_reading_refuses_sns_settings(tmp_path: Path):
    path = write(
        tmp_path,
        "c.toml",
        'env = "x"\n[sns.readings.t]\nfile = "/x"\n'
        'stream = "arn:aws:kinesis:us-east-1:123456789012:stream/s"\nsubject = "s"\n',
    )
    [error] = errors_of(path)
    assert "sns.readings.t" in error and "subject: SNS settings" in error


def test_check_config_shows_which_values_came_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    path = write(tmp_path, "c.toml", 'env = "x"\n[health]\nport = 9180\n')
    monkeypatch.setenv("AWSD__HEALTH__PORT", "9190")
    monkeypatch.setenv("AWSD__LOG__LEVEL", "debug")
    assert cli.main(["check-config", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "# set by the environment (over the files):" in out
    assert "#   health.port = 9190  <- AWSD__HEALTH__PORT" in out
    assert '#   log.level = "debug"  <- AWSD__LOG__LEVEL' in out
    monkeypatch.delenv("AWSD__HEALTH__PORT")
    monkeypatch.delenv("AWSD__LOG__LEVEL")
    assert cli.main(["check-config", "-c", str(path)]) == 0
    assert "set by the environment" not in capsys.readouterr().out


def self_probe(tmp_path: Path, health: str = "") -> Path:
    return write(
        tmp_path,
        "self.toml",
        f'env = "x"\n{health}\n[probes.endpoints.me]\nurl = "self:/healthz"\n'
        '[probes.endpoints.status]\nurl = "self:status"\n',
    )


def test_a_self_url_names_the_daemons_own_health_server_after_overrides(tmp_path: Path):
    path = self_probe(tmp_path, '[health]\nhost = "0.0.0.0"\nport = 9180')
    endpoints = load_config(path, {}).config.probes.endpoints
    assert endpoints["me"].url == "http://127.0.0.1:9180/healthz"
    assert endpoints["status"].url == "http://127.0.0.1:9180/status"
    moved = load_config(path, {"AWSD__HEALTH__PORT": "9290", "AWSD__HEALTH__HOST": "::1"})
    assert moved.config.probes.endpoints["me"].url == "http://[::1]:9290/healthz"


def test_a_self_url_with_the_health_server_off_is_a_clear_config_error(tmp_path: Path):
    path = self_probe(tmp_path, "[health]\nport = 0")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    text = caught.value.render()
    assert "probes.endpoints.me.url" in text and "health.port = 0" in text
