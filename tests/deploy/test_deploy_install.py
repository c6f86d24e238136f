"""deploy/install.sh, run for real into a staging root (`--root`): an offline install from a
wheelhouse, the installed awsd and config, idempotency, in-place upgrades from a source tree and a
wheel, uninstall and purge.

pip installs are slow, so the module builds one wheelhouse and one staged install and the tests
below run in order against them (the uninstall tests come last).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import daemon
from tests.support.container import Container
from tests.support.container import unavailable as container_unavailable
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
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels for the offline path: awsd with the `local` extra and its dependencies, and what
    building awsd from a source tree needs (setuptools, wheel). Built once per module."""
    work = tmp_path_factory.mktemp("wheelhouse")
    wheelhouse = work / "wheels"
    source = copy_sources(work / "src")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--disable-pip-version-check",
        "--wheel-dir",
        wheelhouse,
        f"{source}[local]",
        "setuptools>=68",
        "wheel",
    )
    return wheelhouse


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Staged:
    work = tmp_path_factory.mktemp("staged")
    # A root with a user database, like an image: the installer creates the awsd user in it.
    root = work / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    output = install("--root", root, "--wheelhouse", wheelhouse, "--env", "prod")
    return Staged(root, wheelhouse, work, output)


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


def test_notify_reload_dropin_follows_the_option(staged: Staged) -> None:
    dropin = staged.root / "usr/local/lib/systemd/system/awsd.service.d/notify-reload.conf"
    args = ("--root", staged.root, "--wheelhouse", staged.wheelhouse)
    install(*args, "--notify-reload", "yes")
    assert dropin.read_bytes() == (REPO / "systemd/notify-reload.conf").read_bytes()
    install(*args, "--notify-reload", "no")
    assert not dropin.parent.exists()


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


# --- the live install, under a real systemd ------------------------------------------------------
#
# A container booting this machine's own root file system (an overlay: the host is never
# changed) with systemd as PID 1 and only a loopback network. install.sh runs there without
# --root, exactly as an operator runs it, and the tests drive the service through systemctl.

SANDBOX_PROBE = """
import asyncio, errno, os, socket

async def main(ctx, options):
    found = {}
    try:
        found["thermal"] = sorted(os.listdir("/sys/class/thermal"))
    except OSError as exc:
        found["thermal"] = errno.errorcode.get(exc.errno, "?")
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "id -un; echo $HOME", stdout=asyncio.subprocess.PIPE
    )
    found["subprocess"] = (await proc.communicate())[0].decode().split()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(("169.254.169.254", 80))
        found["imds"] = "connected"
    except OSError as exc:
        found["imds"] = errno.errorcode.get(exc.errno or 0, str(exc))
    finally:
        sock.close()
    for name, path in (("etc", "/etc/awsd/probe"), ("state", "probe")):
        try:
            with open(path, "w") as f:
                f.write("x")
            found[name] = "written"
        except OSError as exc:
            found[name] = errno.errorcode.get(exc.errno, "?")
    ctx.log.info("sandbox probe", **found)
    while not ctx.stop.stopping:
        await ctx.sleep(1)
"""


@dataclass
class Machine:
    box: Container
    source: Path
    wheelhouse: Path
    install_output: str

    def sh(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.box.run(*cmd, check=check)

    def install(self, *args: str) -> str:
        proc = self.box.run(
            "bash",
            f"{self.source}/deploy/install.sh",
            "--wheelhouse",
            str(self.wheelhouse),
            *args,
            timeout=600,
        )
        return proc.stdout + proc.stderr

    def main_pid(self) -> int:
        return int(self.sh("systemctl", "show", "--property=MainPID", "--value", "awsd").stdout)

    def events(self) -> list[dict[str, Any]]:
        lines = self.sh("journalctl", "--unit=awsd", "--output=cat", "--no-pager").stdout
        out = []
        for line in lines.splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    out.append(event)
        return out

    def wait_for(self, event: str, timeout: float = 60.0, **fields: object) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for found in self.events():
                if found.get("event") == event and all(
                    found.get(k) == v for k, v in fields.items()
                ):
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event!r} {fields} in the journal: {self.events()}")
            time.sleep(0.2)

    def config_version(self) -> str:
        """The version `awsd check-config` gives the file on disk now (with the probe importable,
        as the service has it through /etc/default/awsd)."""
        check = ("env", "PYTHONPATH=/etc/awsd/plugins", "/opt/awsd/bin/awsd", "check-config")
        out = self.sh(*check).stdout
        return out.split("config_version ", 1)[1].split(")", 1)[0]

    def status(self) -> dict[str, Any]:
        proc = self.sh(
            "/opt/awsd/bin/python",
            "-c",
            "import urllib.request; print(urllib.request.urlopen("
            "'http://127.0.0.1:9180/status', timeout=5).read().decode())",
        )
        return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Machine]:
    reason = container_unavailable()
    if reason:
        pytest.skip(f"the live-install tests need a container: {reason}")
    work = tmp_path_factory.mktemp("machine")
    source = copy_sources(work / "src")
    box = Container(work / "container", binds=(source, wheelhouse))
    try:
        box.start()
        # env local: the embedded moto server runs as a child process inside the sandbox.
        proc = box.run(
            "bash",
            f"{source}/deploy/install.sh",
            "--wheelhouse",
            str(wheelhouse),
            "--env",
            "local",
            timeout=600,
        )
        yield Machine(box, source, wheelhouse, proc.stdout + proc.stderr)
    finally:
        box.stop()


def test_live_install_starts_the_service_as_the_awsd_user(machine: Machine) -> None:
    assert "created the system user 'awsd'" in machine.install_output
    assert "starting awsd" in machine.install_output
    # The next steps a newcomer needs, printed at the end.
    assert "is installed (service: active)" in machine.install_output
    for step in ("sudo systemctl reload awsd", "journalctl -u awsd -o json", "awsd check-config",
                 "/var/lib/awsd", "--uninstall [--purge]"):  # fmt: skip
        assert step in machine.install_output, step
    assert machine.sh("systemctl", "is-active", "awsd").stdout.strip() == "active"
    assert machine.sh("systemctl", "is-enabled", "awsd").stdout.strip() == "enabled"
    props = machine.sh(
        "systemctl", "show", "awsd", "--property=User,Type,StatusText,FragmentPath"
    ).stdout
    assert "User=awsd\n" in props and "Type=notify\n" in props
    assert "FragmentPath=/usr/local/lib/systemd/system/awsd.service" in props
    assert "workers running" in props  # awsd's STATUS= line
    status = machine.status()
    assert status["state"] == "running"
    assert status["aws"]["local_endpoint"] == "http://127.0.0.1:4566"  # moto, in the sandbox
    owner = machine.sh("stat", "--format=%U %a", "/var/lib/awsd").stdout.split()
    assert owner == ["awsd", "700"]
    # The service's process is named awsd and titled `awsd: ENV` (systemctl status shows both),
    # and `awsd status` finds it through its pid file (state under the unit's working directory).
    pid = machine.main_pid()
    assert machine.sh("cat", f"/proc/{pid}/comm").stdout.strip() == "awsd"
    # systemctl may print the unit before its process lines under load: ask again a few times.
    for _ in range(20):
        shown = machine.sh("systemctl", "status", "--no-pager", "--lines=0", "awsd").stdout
        if "Main PID:" in shown:
            break
        time.sleep(0.5)
    assert f"Main PID: {pid} (awsd)" in shown and f'{pid} "awsd: local"' in shown, shown
    summary = machine.sh("sh", "-c", "cd /var/lib/awsd && /opt/awsd/bin/awsd status").stdout
    assert f"pid {pid}" in summary and "alerts open" in summary, summary


def test_live_security_exposure_is_within_the_limit(machine: Machine) -> None:
    out = machine.sh("systemd-analyze", "security", "--no-pager", "awsd", check=False).stdout
    figure = float(out.rsplit("Overall exposure level for awsd.service:", 1)[1].split()[0])
    assert figure <= 2.0, out


def test_sandbox_keeps_subprocesses_sysfs_and_imds_reachable(machine: Machine) -> None:
    machine.sh("mkdir", "-p", "/etc/awsd/plugins")
    machine.box.write("/etc/awsd/plugins/sandbox_probe.py", SANDBOX_PROBE)
    machine.box.write("/etc/default/awsd", "PYTHONPATH=/etc/awsd/plugins\n", append=True)
    probe = '\n[custom.probe]\nentrypoint = "sandbox_probe:main"\n'
    machine.box.write("/etc/awsd/config.toml", probe, append=True)
    machine.sh("systemctl", "restart", "awsd")
    found = machine.wait_for("sandbox probe")
    assert isinstance(found["thermal"], list)  # /sys/class/thermal is readable
    assert found["subprocess"] == ["awsd", "/var/lib/awsd"]
    # The container has no route to it, but the sandbox let awsd try (it would say EPERM or
    # EAFNOSUPPORT): on EC2 this connect reaches IMDSv2.
    assert found["imds"] in ("connected", "ENETUNREACH", "EHOSTUNREACH", "ETIMEDOUT"), found
    assert found["etc"] in ("EACCES", "EROFS")
    assert found["state"] == "written"


def test_reload_applies_a_valid_config_and_refuses_an_invalid_one(machine: Machine) -> None:
    pid = machine.main_pid()
    machine.box.write("/etc/awsd/config.toml", '\n[log]\nlevel = "debug"\n', append=True)
    version = machine.config_version()
    # (The installed local config also watches its file, so under load the daemon may already
    # have reloaded by itself here; what matters is that after `systemctl reload` it runs it.)
    machine.sh("systemctl", "reload", "awsd")
    reloaded = machine.wait_for("reloaded", config_version=version)
    assert machine.status()["config_version"] == version
    # An invalid file: the reload fails where the operator sees it, nothing changes.
    machine.box.write("/etc/awsd/config.toml", '\n[health]\nport = "nine"\n', append=True)
    refused = machine.sh("systemctl", "reload", "awsd", check=False)
    assert refused.returncode != 0
    assert machine.main_pid() == pid
    assert machine.sh("systemctl", "is-active", "awsd").stdout.strip() == "active"
    assert machine.status()["config_version"] == reloaded["config_version"]
    journal = machine.sh("journalctl", "--unit=awsd", "--output=cat", "--no-pager").stdout
    assert "health.port" in journal
    machine.sh("sed", "-i", "/^\\[health\\]$/,$d", "/etc/awsd/config.toml")


def test_second_live_run_changes_nothing_and_keeps_the_daemon(machine: Machine) -> None:
    pid = machine.main_pid()
    output = machine.install()
    assert "is installed and unchanged" in output
    assert "restarting" not in output and "wrote" not in output
    assert machine.main_pid() == pid


def test_upgrade_restarts_the_service_gracefully(machine: Machine) -> None:
    pid = machine.main_pid()
    stops = len([e for e in machine.events() if e.get("event") == "stopped"])
    output = machine.install("--force")
    assert "restarting awsd" in output
    assert machine.sh("systemctl", "is-active", "awsd").stdout.strip() == "active"
    assert machine.main_pid() != pid
    stopped = [e for e in machine.events() if e.get("event") == "stopped"]
    assert len(stopped) == stops + 1, "the old daemon did not stop gracefully"


def test_stop_exits_cleanly(machine: Machine) -> None:
    machine.sh("systemctl", "stop", "awsd")
    props = machine.sh(
        "systemctl", "show", "awsd", "--property=Result,ExecMainCode,ExecMainStatus"
    ).stdout
    assert "Result=success\n" in props
    assert "ExecMainStatus=0\n" in props


def test_live_uninstall_keeps_state_then_purge_removes_everything(machine: Machine) -> None:
    machine.sh("bash", "/opt/awsd/share/awsd/deploy/install.sh", "--uninstall")
    assert machine.sh("systemctl", "cat", "awsd", check=False).returncode != 0
    assert machine.sh("test", "-d", "/var/lib/awsd", check=False).returncode == 0
    assert machine.sh("test", "-f", "/etc/awsd/config.toml", check=False).returncode == 0
    assert machine.sh("getent", "passwd", "awsd", check=False).returncode == 0
    machine.sh("bash", f"{machine.source}/deploy/install.sh", "--uninstall", "--purge")
    assert machine.sh("getent", "passwd", "awsd", check=False).returncode != 0
    for path in ("/etc/awsd", "/etc/default/awsd", "/var/lib/awsd", "/opt/awsd"):
        assert machine.sh("test", "-e", path, check=False).returncode != 0, path
