"""The shipped deployment files: the systemd unit (what it promises, `systemd-analyze verify`, the
security exposure), the notify-reload drop-in, shell scripts (shellcheck), cloud-init and IAM."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from daemon.config.models import RuntimeConfig
from tests.support.deploy import (
    INSTALL_SH,
    UNIT_FILE,
    run,
    seconds,
    tool,
    unit_entries,
    values,
)
from tests.support.proc import REPO

EXPOSURE_LIMIT = 2.0
DROPIN = REPO / "systemd" / "notify-reload.conf"
CLOUD_INIT = REPO / "deploy" / "cloud-init" / "user-data.yaml"
IAM = REPO / "deploy" / "iam"

UNIT = unit_entries(UNIT_FILE.read_text())


def service(key: str) -> list[str]:
    return [v for section, k, v in UNIT if section == "Service" and k == key]


def one(key: str) -> str:
    found = service(key)
    assert len(found) == 1, f"{key}= should be set once in [Service], found {found}"
    return found[0]


def exposure(output: str) -> float:
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", output)
    assert match, output
    return float(match.group(1))


# --- what the unit promises ----------------------------------------------------------------------


def test_unit_is_a_notify_service_validating_its_config_before_start_and_reload() -> None:
    assert one("Type") == "notify"
    assert one("ExecStartPre").startswith("/opt/awsd/bin/awsd check-config")
    assert one("ExecStart") == "/opt/awsd/bin/awsd run"
    assert "AWSD_CONFIG=/etc/awsd/config.toml" in service("Environment")
    # Validation first, the signal second: a failing check stops the sequence.
    reload = service("ExecReload")
    assert len(reload) == 2
    assert reload[0].startswith("/opt/awsd/bin/awsd check-config")
    assert reload[1] == "/bin/kill -HUP $MAINPID"


def test_unit_restarts_on_failure_but_not_on_an_invalid_config() -> None:
    assert one("Restart") == "on-failure"
    assert one("RestartPreventExitStatus") == "78"
    assert seconds(one("WatchdogSec")) > 0


def test_stop_timeout_leaves_room_for_the_daemons_own_shutdown_deadline() -> None:
    # awsd exits within runtime.shutdown_timeout, and forces its exit 2 s later at the latest.
    default = RuntimeConfig.model_fields["shutdown_timeout"].default
    assert seconds(one("TimeoutStopSec")) > default + 2.0
    assert one("KillMode") == "mixed"


def test_unit_runs_unprivileged_with_its_state_and_config_directories() -> None:
    assert one("User") == "awsd"
    assert one("Group") == "awsd"
    assert "DynamicUser" not in {k for _, k, _ in UNIT}
    assert one("StateDirectory") == "awsd"
    assert one("ConfigurationDirectory") == "awsd"
    assert one("WorkingDirectory") == "/var/lib/awsd"
    assert one("UMask") == "0077"


def test_unit_carries_the_hardening_the_issue_lists() -> None:
    assert one("ProtectSystem") == "strict"
    for key in ("ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges"):
        assert one(key) == "yes", key
    assert one("CapabilityBoundingSet") == ""
    assert one("RestrictNamespaces") == "yes"
    assert service("SystemCallFilter")[0] == "@system-service"
    families = one("RestrictAddressFamilies").split()
    # journald and sd_notify need AF_UNIX; AWS and IMDSv2 (169.254.169.254) need AF_INET.
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert "AF_PACKET" not in families


def test_unit_keeps_what_a_pi_and_an_ec2_instance_need() -> None:
    # /sys/class/thermal stays readable: nothing hides /sys, ProtectKernelTunables only makes it
    # read-only. IMDSv2 stays reachable: no private network, no IP address deny list.
    keys = {k for _, k, _ in UNIT}
    assert not keys & {"PrivateNetwork", "IPAddressDeny", "InaccessiblePaths", "ProcSubset"}
    assert one("ProtectKernelTunables") == "yes"
    # Subprocesses (command handlers, the local moto server) keep working: no W^X ban, and a
    # refused system call is an error they can report rather than a kill.
    assert "MemoryDenyWriteExecute" not in keys
    assert one("SystemCallErrorNumber") == "EPERM"


def test_notify_reload_dropin_resets_exec_reload_to_the_check_alone() -> None:
    entries = unit_entries(DROPIN.read_text())
    assert values(entries, "Type") == ["notify-reload"]
    # systemd sends SIGHUP itself: a second one from kill would reload twice.
    assert values(entries, "ExecReload") == ["", "/opt/awsd/bin/awsd check-config --quiet"]


# --- systemd's own checks ------------------------------------------------------------------------


@pytest.mark.slow
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that executables exist: point a copy at this checkout's awsd.
    awsd_bin = Path(sys.executable).parent
    unit = tmp_path / "awsd.service"
    unit.write_text(UNIT_FILE.read_text().replace("/opt/awsd/bin", str(awsd_bin)))
    proc = run(tool("systemd-analyze"), "verify", unit)
    assert proc.stdout + proc.stderr == ""


@pytest.mark.slow
def test_unit_exposure_is_within_the_limit() -> None:
    proc = run(
        tool("systemd-analyze"),
        "security",
        "--offline=yes",
        f"--threshold={int(EXPOSURE_LIMIT * 10)}",
        "--no-pager",
        UNIT_FILE,
        check=False,
    )
    figure = exposure(proc.stdout)
    print(f"systemd-analyze security exposure of awsd.service: {figure}")
    assert figure <= EXPOSURE_LIMIT, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- scripts, cloud-init, IAM --------------------------------------------------------------------


def cloud_init() -> dict[str, object]:
    text = CLOUD_INIT.read_text()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def bootstrap_script() -> str:
    files = cloud_init()["write_files"]
    assert isinstance(files, list)
    (script,) = [f for f in files if f["path"] == "/usr/local/sbin/awsd-bootstrap"]
    return str(script["content"])


@pytest.mark.slow
def test_shell_scripts_are_shellcheck_clean(tmp_path: Path) -> None:
    bootstrap = tmp_path / "awsd-bootstrap"
    bootstrap.write_text(bootstrap_script())
    run(tool("shellcheck"), "--severity=style", INSTALL_SH, bootstrap)


def test_cloud_init_installs_python_and_runs_the_installer() -> None:
    data = cloud_init()
    packages = data["packages"]
    assert isinstance(packages, list)
    assert {"python3", "python3-venv"} <= set(packages)
    assert data["runcmd"] == [["/usr/local/sbin/awsd-bootstrap"]]
    script = bootstrap_script()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert 'deploy/install.sh" --env "$AWSD_ENV"' in script
    assert 'AWSD_ENV="prod"' in script
    # Credentials from the instance role, never from user data.
    assert "AWS_SECRET_ACCESS_KEY" not in CLOUD_INIT.read_text()


def test_iam_documents_are_policies_and_the_readme_says_how_to_regenerate_them() -> None:
    for name in ("trust-policy.json", "instance-profile-policy.json"):
        policy = json.loads((IAM / name).read_text())
        assert policy["Version"] == "2012-10-17"
        assert policy["Statement"], name
        for statement in policy["Statement"]:
            assert statement["Effect"] in ("Allow", "Deny")
            assert statement["Action"]
    # No longer a placeholder: generated from the prod template (tests/iam/test_iam_policy.py
    # fails when it is stale), and the README tells operators to generate their own.
    readme = (IAM / "README.md").read_text()
    assert "awsd iam-policy --config configs/prod.toml" in readme
    assert "sudo -u awsd /opt/awsd/bin/awsd iam-policy" in readme


@pytest.mark.parametrize("name", ["prod", "pi", "dev", "local"])
def test_every_environment_has_a_template_the_installer_can_offer(name: str) -> None:
    template = REPO / "configs" / f"{name}.toml"
    assert 'extends = "base.toml"' in template.read_text()
