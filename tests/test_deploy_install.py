"""deploy/install.sh, run for real into a staging root (`--root`): an offline install from a
wheelhouse, the installed awsd and config, idempotency, in-place upgrades from a source tree and a
wheel, uninstall and purge.

pip installs are slow, so the module builds one wheelhouse and one staged install and the tests
below run in order against them (the uninstall tests come last).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import daemon
from tests.support.deploy import (
    INSTALL_SH,
    UNIT_FILE,
    copy_sources,
    manifest,
    run,
    tool,
)
from tests.support.proc import REPO

pytestmark = pytest.mark.slow


@dataclass
class Staged:
    root: Path
    wheelhouse: Path
    work: Path
    first_output: str

    @property
    def awsd(self) -> Path:
        return self.root / "opt/awsd/bin/awsd"

    @property
    def wheel(self) -> Path:
        (wheel,) = self.wheelhouse.glob("awsd-*.whl")
        return wheel

    def gid(self) -> int:
        for line in (self.root / "etc/group").read_text().splitlines():
            if line.startswith("awsd:"):
                return int(line.split(":")[2])
        raise AssertionError("no awsd group in the staged /etc/group")


def install(*args: str | Path, check: bool = True, env: dict[str, str] | None = None) -> str:
    proc = run("bash", INSTALL_SH, *args, check=check, env=env or installer_env())
    return proc.stdout + proc.stderr


def installer_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWSD", "AWS_", "PIP_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staged]:
    work = tmp_path_factory.mktemp("deploy")
    # One wheelhouse for the offline path: awsd's wheel, its dependencies, and what building
    # awsd from a source tree needs (setuptools, wheel).
    wheelhouse = work / "wheelhouse"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--disable-pip-version-check",
        "--wheel-dir",
        wheelhouse,
        copy_sources(work / "src"),
        "setuptools>=68",
        "wheel",
    )
    # A root with a user database, like an image: the installer creates the awsd user in it.
    root = work / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    output = install("--root", root, "--wheelhouse", wheelhouse, "--env", "prod")
    yield Staged(root, wheelhouse, work, output)


# --- the staged install --------------------------------------------------------------------------


def test_installed_awsd_runs_and_accepts_the_installed_config(staged: Staged) -> None:
    assert run(staged.awsd, "--version").stdout.strip() == f"awsd {daemon.__version__}"
    config = staged.root / "etc/awsd/config.toml"
    proc = run(staged.awsd, "check-config", "--config", config, cwd="/")
    assert "configuration OK (env prod" in proc.stdout
    assert f"{staged.root}/etc/awsd/base.toml" in proc.stdout  # extends resolved next to it


def test_install_lays_out_unit_user_config_and_state_permissions(staged: Staged) -> None:
    root = staged.root
    unit = root / "usr/local/lib/systemd/system/awsd.service"
    assert unit.read_bytes() == UNIT_FILE.read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/awsd.service"
    assert os.readlink(wants) == "/usr/local/lib/systemd/system/awsd.service"
    assert not (root / "usr/local/lib/systemd/system/awsd.service.d").exists()
    assert (root / "usr/local/lib/sysusers.d/awsd.conf").is_file()
    passwd = (root / "etc/passwd").read_text()
    assert any(
        line.startswith("awsd:") and line.endswith(":/var/lib/awsd:/usr/sbin/nologin")
        for line in passwd.splitlines()
    ), passwd
    gid = staged.gid()
    for path, mode, group in [
        ("etc/awsd", 0o750, gid),
        ("etc/awsd/config.toml", 0o640, gid),
        ("etc/awsd/base.toml", 0o640, gid),
        ("etc/default/awsd", 0o600, 0),
    ]:
        st = (root / path).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, group), path
    config = (root / "etc/awsd/config.toml").read_text()
    assert 'extends = "base.toml"' in config
    assert 'env = "prod"' in config
    assert (root / "etc/awsd/base.toml").read_bytes() == (REPO / "configs/base.toml").read_bytes()
    share = root / "opt/awsd/share/awsd"
    assert sorted(p.name for p in (share / "configs").glob("*.toml")) == sorted(
        p.name for p in (REPO / "configs").glob("*.toml")
    )
    assert (share / "deploy/install.sh").read_bytes() == INSTALL_SH.read_bytes()
    # State is systemd's to create (StateDirectory=), never the installer's.
    assert not (root / "var/lib/awsd").exists()


def test_installed_unit_passes_verify_against_the_installed_venv(staged: Staged) -> None:
    installed = staged.root / "usr/local/lib/systemd/system/awsd.service"
    copy = staged.work / "verify" / "awsd.service"
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(installed.read_text().replace("/opt/awsd/", f"{staged.root}/opt/awsd/"))
    proc = run(tool("systemd-analyze"), "verify", copy)
    assert proc.stdout + proc.stderr == ""


def test_second_run_changes_nothing(staged: Staged) -> None:
    before = manifest(staged.root)
    output = install("--root", staged.root, "--wheelhouse", staged.wheelhouse, "--env", "prod")
    assert "is installed and unchanged" in output
    assert "wrote" not in output
    assert manifest(staged.root) == before


def test_staging_never_touches_the_running_system(staged: Staged, tmp_path: Path) -> None:
    # Stand-ins for every tool that would change the live system record how they were called.
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("systemctl", "useradd", "userdel", "groupdel", "apt-get", "journalctl"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        script.chmod(0o755)
    env = installer_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    install("--root", staged.root, "--wheelhouse", staged.wheelhouse, env=env)
    recorded = calls.read_text().splitlines() if calls.exists() else []
    assert all(line.startswith(f"systemctl --root={staged.root} ") for line in recorded), recorded


def test_existing_config_is_kept_and_a_different_env_is_only_warned_about(staged: Staged) -> None:
    config = staged.root / "etc/awsd/config.toml"
    before = config.stat().st_mtime_ns, config.read_bytes()
    output = install("--root", staged.root, "--wheelhouse", staged.wheelhouse, "--env", "pi")
    assert "--env pi ignored" in output
    assert (config.stat().st_mtime_ns, config.read_bytes()) == before


def test_bad_arguments_fail_before_anything_is_installed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for args, message in [
        (["--bogus"], "unknown option: --bogus"),
        (["--purge"], "--purge goes with --uninstall"),
        (["--env", "Prod!"], "invalid environment name"),
        (["--env", "nosuch", "--source", str(REPO)], "no 'nosuch' template; choose one of:"),
        (["--wheel", str(REPO / "README.md")], "not a .whl file"),
    ]:
        proc = run("bash", INSTALL_SH, "--root", root, *args, check=False, env=installer_env())
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
    assert not (root / "opt").exists()


# --- upgrades ------------------------------------------------------------------------------------


def test_upgrade_from_a_source_tree_keeps_config_and_edited_base(staged: Staged) -> None:
    root = staged.root
    config = root / "etc/awsd/config.toml"
    base = root / "etc/awsd/base.toml"
    config.write_text(config.read_text() + "# edited by the operator\n")
    base.write_text(base.read_text() + "# edited by the operator too\n")
    edited_config, edited_base = config.read_bytes(), base.read_bytes()
    # A new release whose default base.toml changed.
    source = copy_sources(staged.work / "release-2")
    (source / "configs/base.toml").write_text(
        (source / "configs/base.toml").read_text() + "# a new default\n"
    )
    output = install("--root", root, "--source", source, "--wheelhouse", staged.wheelhouse)
    assert "installed awsd" in output
    assert config.read_bytes() == edited_config
    assert base.read_bytes() == edited_base
    dist = root / "etc/awsd/base.toml.dist"
    assert dist.read_bytes() == (source / "configs/base.toml").read_bytes()
    assert "kept your edited /etc/awsd/base.toml" in output
    shipped = root / "opt/awsd/share/awsd/configs/base.toml"
    assert shipped.read_bytes() == dist.read_bytes()
    # The same release again: nothing to do.
    before = manifest(root)
    output = install("--root", root, "--source", source, "--wheelhouse", staged.wheelhouse)
    assert "is installed and unchanged" in output
    assert manifest(root) == before


def test_upgrade_from_a_wheel_replaces_an_unedited_base(staged: Staged) -> None:
    base = staged.root / "etc/awsd/base.toml"
    # The operator adopts the new default: base.toml is unedited again, so it follows upgrades.
    base.write_bytes((staged.root / "etc/awsd/base.toml.dist").read_bytes())
    output = install(
        "--root", staged.root, "--wheel", staged.wheel, "--wheelhouse", staged.wheelhouse
    )
    assert "installed awsd" in output
    assert base.read_bytes() == (REPO / "configs/base.toml").read_bytes()
    assert not (staged.root / "etc/awsd/base.toml.dist").exists()
    assert run(staged.awsd, "--version").stdout.strip() == f"awsd {daemon.__version__}"


# --- removal (last: they take the staged install away) -------------------------------------------


def test_uninstall_keeps_config_and_state(staged: Staged) -> None:
    root = staged.root
    outbox = root / "var/lib/awsd/outbox/0001.json"
    outbox.parent.mkdir(parents=True)
    outbox.write_text("{}")
    output = install("--root", root, "--uninstall")
    assert "awsd is uninstalled" in output
    for gone in (
        "opt/awsd",
        "usr/local/lib/systemd/system/awsd.service",
        "etc/systemd/system/multi-user.target.wants/awsd.service",
    ):
        assert not (root / gone).exists(), gone
    for kept in ("etc/awsd/config.toml", "etc/awsd/base.toml", "etc/default/awsd"):
        assert (root / kept).is_file(), kept
    assert outbox.read_text() == "{}"
    assert "awsd:" in (root / "etc/passwd").read_text()  # the owner of the state stays
    # Uninstalling what is not there is not an error.
    install("--root", root, "--uninstall")


def test_purge_removes_config_state_and_user(staged: Staged) -> None:
    root = staged.root
    install("--root", root, "--uninstall", "--purge")
    for gone in (
        "etc/awsd",
        "etc/default/awsd",
        "var/lib/awsd",
        "usr/local/lib/sysusers.d/awsd.conf",
    ):
        assert not (root / gone).exists(), gone
    assert "awsd:" not in (root / "etc/passwd").read_text()
    assert "awsd:" not in (root / "etc/group").read_text()
    files = [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]
    left = sorted(str(p.relative_to(root)) for p in files)
    assert all(p.startswith("etc/") for p in left), left
