"""The mount probe (`kind = "mount"`): what is mounted at a path, and whether it answers.

In-process tests give the probe a mountinfo file of their own (the format of
`/proc/self/mountinfo`) naming a real temporary directory, so the file operations run for real
while the mount table says what each case needs; a hung file server is an injected file
operation that blocks until the test lets it go. One slow test mounts for real, as root, in a
private mount namespace: a tmpfs, a read-only bind mount of it, and a path with nothing mounted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from daemon.config.probes import EndpointConfig, ProbesConfig
from daemon.core.metrics import Registry
from daemon.probes.metrics import ProbeMetrics
from daemon.probes.mount import MountProber, efs_id, exercise, find_mount, parse_mountinfo
from daemon.probes.prober import Prober
from daemon.probes.result import Reason

FS = "fs-0123456789abcdef0"


def mountinfo_line(mount_point: str, fs_type: str, source: str, options: str = "rw") -> str:
    point = mount_point.replace(" ", "\\040")
    return f"36 25 0:52 / {point} {options},relatime shared:1 - {fs_type} {source} rw,vers=4.1\n"


def endpoint(path: Path | str, **fields: object) -> EndpointConfig:
    return EndpointConfig.model_validate(
        {"kind": "mount", "path": str(path), "interval": 10, "timeout": 2, **fields}
    )


def table(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "mountinfo"
    path.write_text("".join(lines))
    return str(path)


async def test_a_mounted_writable_file_system_is_up_with_its_type_source_and_io_phases(tmp_path):
    share = tmp_path / "efs"
    share.mkdir()
    source = f"{FS}.efs.eu-west-1.amazonaws.com:/"
    info = table(tmp_path, mountinfo_line(str(share), "nfs4", source))
    prober = Prober(mount=MountProber(mountinfo=info))
    try:
        result = await prober.check("efs", endpoint(share, fs_type=["nfs4"], fs_id=FS))
    finally:
        await prober.close()
    assert result.success, result.detail
    assert (result.kind, result.target) == ("mount", f"mount://{share}")
    assert result.mount is not None
    assert (result.mount.fs_type, result.mount.fs_id, result.mount.read_only) == ("nfs4", FS, False)
    assert [phase for phase, _ in result.mount.phases] == ["write", "fsync", "read", "delete"]
    assert list((share / ".awsd-probe").iterdir()) == []  # the probe file is deleted
    assert result.to_dict()["mount"]["phases"].keys() == {"write", "fsync", "read", "delete"}


@pytest.mark.parametrize(
    ("line", "fields", "reason"),
    [
        (None, {}, Reason.NOT_MOUNTED),
        (("ext4", "/dev/sda1"), {"fs_type": ["nfs4"]}, Reason.WRONG_FILESYSTEM),
        (("nfs4", "fs-99999999.efs.x.amazonaws.com:/"), {"fs_id": FS}, Reason.WRONG_FILESYSTEM),
        (("nfs4", "server:/export", "ro"), {}, Reason.READ_ONLY),
    ],
    ids=["nothing-mounted", "other-type", "other-efs", "read-only"],
)
async def test_each_mount_table_failure_has_its_reason(tmp_path, line, fields, reason):
    share = tmp_path / "share"
    share.mkdir()
    lines = [mountinfo_line("/", "ext4", "/dev/root")]
    if line is not None:
        lines.append(mountinfo_line(str(share), *line))
    calls: list[str] = []

    def never(directory: str, name: str) -> list[tuple[str, float]]:
        calls.append(directory)
        return []

    probe = MountProber(mountinfo=table(tmp_path, *lines), exercise=never)
    result = await probe.probe("share", endpoint(share, **fields))
    assert (result.success, result.reason) == (False, reason), result.detail
    assert calls == []  # no file operation on a wrong mount


async def test_a_failing_file_operation_is_an_io_error_naming_the_step(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / ".awsd-probe").write_text("a file where the probe directory goes")
    probe = MountProber(mountinfo=table(tmp_path, mountinfo_line(str(share), "nfs4", "srv:/x")))
    result = await probe.probe("share", endpoint(share))
    assert (result.success, result.reason) == (False, Reason.IO_ERROR)
    assert result.detail.startswith("mkdir in .awsd-probe:")


async def test_slower_file_operations_than_max_latency_fail_as_latency(tmp_path):
    share = tmp_path / "share"
    share.mkdir()

    def slow(directory: str, name: str) -> list[tuple[str, float]]:
        return [("write", 0.2), ("fsync", 0.5), ("read", 0.1), ("delete", 0.1)]

    probe = MountProber(
        mountinfo=table(tmp_path, mountinfo_line(str(share), "nfs4", "srv:/x")), exercise=slow
    )
    result = await probe.probe("share", endpoint(share, conditions={"max_latency": "500ms"}))
    assert (result.success, result.reason) == (False, Reason.LATENCY)
    assert "900ms" in result.detail


async def test_a_stuck_file_operation_times_out_is_counted_and_not_restarted_until_it_returns(
    tmp_path,
):
    share = tmp_path / "share"
    share.mkdir()
    release, started = threading.Event(), []

    def hung(directory: str, name: str) -> list[tuple[str, float]]:
        started.append(directory)
        release.wait(30)  # a hard NFS mount with its server gone
        return [("write", 0.0)]

    probe = MountProber(
        mountinfo=table(tmp_path, mountinfo_line(str(share), "nfs4", "srv:/x")), exercise=hung
    )
    metrics = ProbeMetrics(Registry())
    cfg = endpoint(share, timeout=0.2, interval=1)
    try:
        first = await probe.probe("share", cfg)
        second = await probe.probe("share", cfg)
        for result in (first, second):
            metrics.observe(result)
    finally:
        release.set()
    assert (first.reason, second.reason) == (Reason.TIMEOUT, Reason.TIMEOUT)
    assert first.mount is not None and first.mount.stuck
    assert "still stuck" in second.detail
    assert len(started) == 1  # the second check started no other thread
    assert probe.stuck_total == 1 and "share" in probe.stuck
    assert metrics.mount_stuck_total.labels(endpoint="share").value == 1
    assert metrics.mount_stuck.labels(endpoint="share").value == 1

    # Once the operation returns, the next check runs again.
    await probe._running["share"].future
    third = await probe.probe("share", cfg)
    assert third.success and len(started) == 2
    metrics.observe(third)
    assert metrics.mount_stuck.labels(endpoint="share").value == 0


def test_mountinfo_parsing_unescapes_paths_and_finds_the_last_mount_and_the_efs_id(tmp_path):
    entries = parse_mountinfo(
        mountinfo_line("/mnt/my share", "ext4", "/dev/sdb1")
        + mountinfo_line("/mnt/my share", "nfs4", "127.0.0.1:/")
        + "garbage line\n"
    )
    found = find_mount(entries, "/mnt/my share/")
    assert found is not None and found.fs_type == "nfs4"
    # A TLS mount by amazon-efs-utils: the id is in its state file, named with the port.
    tls = parse_mountinfo(
        "40 25 0:60 / /mnt/efs rw,relatime - nfs4 127.0.0.1:/ rw,vers=4.1,port=20049\n"
    )[0]
    state = tmp_path / "efs-state"
    state.mkdir()
    (state / f"{FS}.mnt.efs.20049").write_text("{}")
    assert efs_id(tls, str(state)) == FS
    assert efs_id(tls, str(tmp_path / "none")) is None


def test_mount_endpoints_take_a_path_and_only_their_own_fields():
    cfg = ProbesConfig.model_validate(
        {"endpoints": {"efs": {"kind": "mount", "path": "/mnt/efs", "fs_type": ["nfs4"]}}}
    )
    assert cfg.endpoints["efs"].check == "mount"
    bad = [
        {"kind": "mount", "url": "https://x"},
        {"kind": "mount"},
        {"kind": "mount", "path": "relative"},
        {"url": "https://x", "path": "/mnt"},
        {"kind": "mount", "path": "/mnt", "probe_dir": "../up"},
        {"kind": "mount", "path": "/mnt", "fs_id": "fs-XYZ"},
    ]
    for fields in bad:
        with pytest.raises(ValueError):
            EndpointConfig.model_validate(fields)


def test_the_file_operations_write_sync_read_and_delete(tmp_path):
    steps = exercise(str(tmp_path / "probe"), "f")
    assert [s for s, _ in steps] == ["write", "fsync", "read", "delete"]
    assert list((tmp_path / "probe").iterdir()) == []


SCRIPT = """
import asyncio, json, sys
from daemon.config.probes import EndpointConfig
from daemon.probes.mount import MountProber

async def main():
    probe = MountProber()
    out = {}
    for name, path in zip(("tmpfs", "readonly", "missing"), sys.argv[1:]):
        cfg = EndpointConfig(kind="mount", path=path, fs_type=["tmpfs"], interval=10, timeout=5)
        result = await probe.probe(name, cfg)
        out[name] = [result.success, str(result.reason), result.mount.fs_type]
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_real_mounts_in_a_private_namespace(tmp_path):
    """A tmpfs (up), a read-only bind mount of it (read_only), a bare directory
    (not_mounted): mounted in a namespace of the test's own, so the host sees nothing."""
    rw, ro, bare = tmp_path / "rw", tmp_path / "ro", tmp_path / "bare"
    for d in (rw, ro, bare):
        d.mkdir()
    shell = (
        f"mount -t tmpfs -o size=1m tmpfs {rw} && mount --bind {rw} {ro} && "
        f'mount -o remount,bind,ro {ro} && exec {sys.executable} -c "$0" {rw} {ro} {bare}'
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {
        "tmpfs": [True, "None", "tmpfs"],
        "readonly": [False, "read_only", "tmpfs"],
        "missing": [False, "not_mounted", None],
    }
    assert str(rw) not in Path("/proc/self/mountinfo").read_text()
