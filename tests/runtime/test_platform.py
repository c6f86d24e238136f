"""What differs between hosts: a machine without uvloop (32-bit Raspberry Pi OS, where it has no
wheel) and the default places a config is looked up in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config.errors import ConfigError
from daemon.config.loader import select_config_file
from tests.conftest import ConfigFactory
from tests.support.proc import REPO, Awsd

Start = Callable[..., Awsd]


@pytest.mark.slow
def test_without_uvloop_the_daemon_runs_on_asyncios_own_loop(
    tmp_path: Path, offline_configs: ConfigFactory, awsd: Start
):
    shadow = tmp_path / "no-uvloop"
    shadow.mkdir()
    (shadow / "uvloop.py").write_text('raise ImportError("no uvloop wheel on this machine")\n')
    proc = awsd(offline_configs.write(), env={"PYTHONPATH": f"{shadow}:{REPO}"})
    proc.wait_ready()
    assert proc.logs.wait_for("starting")["loop"] == "asyncio"
    assert proc.http("/healthz")[0] == 200
    assert proc.stop() == 0


@pytest.mark.slow
def test_with_uvloop_installed_it_is_used(offline_configs: ConfigFactory, awsd: Start):
    pytest.importorskip("uvloop")
    proc = awsd(offline_configs.write())
    proc.wait_ready()
    assert proc.logs.wait_for("starting")["loop"] == "uvloop"
    assert proc.stop() == 0


def test_env_is_looked_up_in_etc_awsd_then_in_configs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    # No --config-dir and no AWSD_CONFIG_DIR: /etc/awsd first (absent here), then ./configs.
    assert not Path("/etc/awsd/local.toml").exists()
    assert select_config_file(env="local", environ={}) == Path("configs/local.toml")
    assert select_config_file(environ={"AWSD_ENV": "pi"}) == Path("configs/pi.toml")
    with pytest.raises(ConfigError) as error:
        select_config_file(env="nosuch", environ={})
    assert "known: " in str(error.value) and "local" in str(error.value)


def test_a_config_dir_is_the_only_place_looked_in(tmp_path: Path):
    (tmp_path / "edge.toml").write_text('env = "edge"\n')
    assert select_config_file(env="edge", config_dir=str(tmp_path), environ={}) == (
        tmp_path / "edge.toml"
    )
    with pytest.raises(ConfigError):
        select_config_file(env="local", config_dir=str(tmp_path), environ={})
