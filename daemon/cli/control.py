"""`awsd status`, `awsd reload`, `awsd stop` and `awsd dump-tasks`: the running daemon of a config.

Each finds the daemon that runs with the chosen config (`--env`/`--config`) through the pid file
of its state directory, or its health port (`daemon.cli.common.find_daemon`), so two daemons on
one machine are never confused, and nothing matches processes by name.

- `status` summarises /status for people (`--json`: the document itself); exit 0 running,
  3 not running (as `systemctl status`), 1 running but its health server does not answer.
- `reload` checks the file first (an invalid one: its errors, exit 78, nothing sent, as
  `systemctl reload` does), sends SIGHUP and waits for the outcome the daemon reports: exit 0
  applied, 1 rejected (the running config stays), 69 not running.
- `stop` sends SIGTERM and waits until the process is gone (within `runtime.shutdown_timeout`);
  exit 0 stopped or not running, 1 still running.
- `dump-tasks` sends SIGUSR1 and prints where every asyncio task waits (also in the daemon's
  log), for a daemon that seems stuck; 69 when not running.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from daemon.cli.common import (
    Found,
    Settings,
    add_config_args,
    config_failure,
    find_daemon,
    get_json,
    load_from_args,
    settings_from_args,
)
from daemon.config import ConfigError

EX_NOT_RUNNING = 3
"""`status` of a daemon that is not running (LSB, like `systemctl status`)."""
EX_UNAVAILABLE = 69
"""A command that needs the running daemon found none (as `awsd publish`)."""
POLL = 0.1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status", help="the running daemon's workers, restarts, errors, alerts and outbox"
    )
    add_config_args(status)
    status.add_argument("--json", action="store_true", help="print /status as JSON")
    status.set_defaults(func=cmd_status)

    reload = sub.add_parser(
        "reload", help="reload the running daemon's config and report the outcome"
    )
    add_config_args(reload)
    reload.add_argument("--no-wait", action="store_true", help="only send SIGHUP")
    reload.set_defaults(func=cmd_reload)

    stop = sub.add_parser("stop", help="stop the running daemon gracefully and wait for it")
    add_config_args(stop)
    stop.add_argument("--no-wait", action="store_true", help="only send SIGTERM")
    stop.set_defaults(func=cmd_stop)

    dump = sub.add_parser(
        "dump-tasks", help="print where every task of the running daemon waits (SIGUSR1)"
    )
    add_config_args(dump)
    dump.add_argument("--json", action="store_true", help="print the dump as JSON")
    dump.set_defaults(func=cmd_dump_tasks)


def _locate(args: argparse.Namespace) -> tuple[Settings, Found] | int:
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    return settings, find_daemon(settings)


def _not_running(settings: Settings, found: Found) -> str:
    return f"awsd ({settings.env}, {settings.path}) is {found.problem}"


# --- status --------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    located = _locate(args)
    if isinstance(located, int):
        return located
    settings, found = located
    if not found.running:
        print(_not_running(settings, found))
        return EX_NOT_RUNNING
    if found.starting:
        print(f"awsd ({settings.env}) is starting as pid {found.pid}")
        return 0
    status = get_json(f"{found.health_url}/status") if found.health_url else None
    if not isinstance(status, dict):
        why = (
            f"/status does not answer on {found.health_url}"
            if found.health_url
            else "its health server is off (health.port = 0): nothing more to show"
        )
        print(f"awsd ({settings.env}) runs as pid {found.pid}, but {why}")
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(render_status(status, found))
    return 0


def render_status(status: dict[str, Any], found: Found) -> str:
    """/status for people: the daemon, then a line per worker, then what needs attention."""
    lines = [
        f"awsd {status.get('env')} · {status.get('state')} · pid {status.get('pid')} · "
        f"up {_duration(status.get('uptime_s'))} · config {status.get('config_version')} "
        f"({status.get('config_path')})"
    ]
    reloads = status.get("reloads") or {}
    aws = status.get("aws") or {}
    facts = [
        ("health", found.health_url or "off"),
        ("aws", aws.get("local_endpoint") or aws.get("region") or "-"),
        ("startup", status.get("startup")),
        ("reloads", f"{reloads.get('ok', 0)} ok, {reloads.get('failed', 0)} failed"),
    ]
    lines.append("  " + "   ".join(f"{name} {value}" for name, value in facts))
    workers: dict[str, dict[str, Any]] = status.get("workers") or {}
    if workers:
        width = max(len("worker"), *(len(n) for n in workers))
        lines += ["", f"  {'worker':<{width}}  {'state':<10} {'restarts':>8}  detail"]
        for name, w in workers.items():
            detail = _worker_detail(w)
            lines.append(
                f"  {name:<{width}}  {w.get('state', '?'):<10} {w.get('restarts', 0):>8}  {detail}"
            )
    lines += _attention(status, workers)
    return "\n".join(lines)


def _attention(status: dict[str, Any], workers: dict[str, dict[str, Any]]) -> list[str]:
    out: list[str] = []
    if status.get("not_ready"):
        out += ["", f"  not ready: {', '.join(status['not_ready'])}"]
    errors = [(n, w) for n, w in workers.items() if w.get("last_error")]
    if errors:
        out += ["", "  last errors"]
        out += [
            f"    {n}  {_clock(w.get('last_error_at'))}  {_cut(str(w['last_error']), 100)}"
            for n, w in errors
        ]
    last_reload = (status.get("reloads") or {}).get("last_errors") or []
    if last_reload:
        out += ["", "  last reload rejected; the running config stays:"]
        out += [f"    {_cut(str(e), 110)}" for e in last_reload]
    alerts = [
        (name, ep)
        for w in workers.values()
        for name, ep in (w.get("endpoints") or {}).items()
        if (ep.get("alert") or {}).get("open")
    ]
    out += ["", f"  alerts open: {len(alerts) or 'none'}"]
    for name, ep in alerts:
        last = ep.get("last") or {}
        opened = (ep.get("alert") or {}).get("opened_at")
        out.append(
            f"    {name}  since {_clock(opened)}  "
            f"{last.get('reason') or '-'}: {_cut(str(last.get('detail') or ''), 80)}"
        )
    outbox = next((w["outbox"] for w in workers.values() if "outbox" in w), None)
    if outbox is not None:
        failing = outbox.get("failing") or {}
        line = (
            f"  outbox: {outbox.get('waiting', 0)} waiting ({_bytes(outbox.get('bytes', 0))}), "
            f"oldest {_duration(outbox.get('oldest_age_s'))}; "
            f"{outbox.get('rejected_since_start', 0)} rejected since start (awsd outbox --dead)"
        )
        out += ["", line]
        out += [f"    failing: {dest}: {_cut(str(why), 90)}" for dest, why in failing.items()]
    return out


def _worker_detail(w: dict[str, Any]) -> str:
    kind = w.get("kind")
    if w.get("waiting_for"):
        return f"waits for the {w['waiting_for']}"
    if kind == "sqs":
        return (
            f"{w.get('received', 0)} received, {w.get('processed', 0)} processed, "
            f"{w.get('failed', 0)} failed, {w.get('in_flight', 0)} in flight"
        )
    if kind == "kinesis_reader":
        shards = w.get("shards") or {}
        behind = max((s.get("millis_behind_latest") or 0 for s in shards.values()), default=0)
        return f"{w.get('stream')}: {len(shards)} shards, {behind} ms behind"
    if kind == "probes":
        return (
            f"{w.get('endpoints_total', 0)} endpoints, {w.get('endpoints_down', 0)} down, "
            f"{w.get('alerts_open', 0)} alerts open"
        )
    if kind == "reconciler":
        last = w.get("last_pass") or {}
        drift = len(last.get("drifted") or [])
        return (
            f"{w.get('mode')}: {w.get('passes', 0)} passes, "
            f"{last.get('checked', 0)} checked, {drift} drifted"
            + ("" if w.get("leader", True) else ", not the leader")
        )
    if kind == "sns":
        readings = w.get("readings") or {}
        done = ", ".join(f"{n} {r.get('published', 0)} published" for n, r in readings.items())
        return done or f"{w.get('events_published', 0)} events published"
    if kind == "outbox":
        box = w.get("outbox") or {}
        return f"{box.get('waiting', 0)} waiting"
    return ""


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    total = int(seconds)
    if total < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours < 48 else f"{hours // 24}d {hours % 24}h"


def _clock(iso: Any) -> str:
    """`2026-01-02T18:39:04Z` -> `18:39:04` (UTC, as /status gives it)."""
    text = str(iso or "")
    return text[11:19] + "Z" if len(text) >= 19 else "-"


def _bytes(size: Any) -> str:
    value = float(size or 0)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- reload, stop, dump-tasks --------------------------------------------------------------------


def cmd_reload(args: argparse.Namespace) -> int:
    from daemon.runtime.process import signal_process  # noqa: PLC0415

    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        config_failure(exc)
        print("awsd: nothing sent: the running daemon keeps its config", file=sys.stderr)
        return 78
    settings = Settings.of(loaded.path, loaded.config)
    found = find_daemon(settings)
    if not found.running or found.pid is None:
        print(f"awsd: {_not_running(settings, found)}", file=sys.stderr)
        return EX_UNAVAILABLE
    before = _reloads(found)
    failure = signal_process(found.pid, signal.SIGHUP)
    if failure:
        print(f"awsd: {failure}", file=sys.stderr)
        return 1
    if args.no_wait or before is None:
        print(f"reload requested (SIGHUP to pid {found.pid})")
        return 0
    give_up = time.monotonic() + settings.shutdown_timeout + 30.0
    while time.monotonic() < give_up:
        time.sleep(POLL)
        status = get_json(f"{found.health_url}/status")
        now = _count(status)
        if now is None or now <= before:
            continue
        assert isinstance(status, dict)
        errors = (status.get("reloads") or {}).get("last_errors") or []
        if errors:
            print(
                "awsd: reload rejected; the running config stays "
                f"({status.get('config_version')}):",
                file=sys.stderr,
            )
            for error in errors:
                print(f"  {error}", file=sys.stderr)
            return 1
        print(f"reloaded: pid {found.pid} runs config {status.get('config_version')}")
        return 0
    print(f"awsd: sent SIGHUP to pid {found.pid}; no outcome reported yet", file=sys.stderr)
    return 1


def _reloads(found: Found) -> int | None:
    return _count(get_json(f"{found.health_url}/status")) if found.health_url else None


def _count(status: Any) -> int | None:
    if not isinstance(status, dict):
        return None
    reloads = status.get("reloads") or {}
    return int(reloads.get("ok", 0)) + int(reloads.get("failed", 0))


def cmd_stop(args: argparse.Namespace) -> int:
    from daemon.runtime.process import signal_process  # noqa: PLC0415

    located = _locate(args)
    if isinstance(located, int):
        return located
    settings, found = located
    if not found.running or found.pid is None:
        print(_not_running(settings, found))
        return 0
    pid = found.pid
    failure = signal_process(pid, signal.SIGTERM)
    if failure:
        print(f"awsd: {failure}", file=sys.stderr)
        return 1
    if args.no_wait:
        print(f"stop requested (SIGTERM to pid {pid})")
        return 0
    began = time.monotonic()
    give_up = began + settings.shutdown_timeout + 10.0
    while time.monotonic() < give_up:
        if _gone(pid):
            print(f"stopped: pid {pid} exited after {time.monotonic() - began:.1f}s")
            return 0
        time.sleep(POLL)
    print(f"awsd: pid {pid} is still running after {give_up - began:.0f}s", file=sys.stderr)
    return 1


def _gone(pid: int) -> bool:
    """The process has exited (a zombie its parent has not reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # it exists (kill said so) and /proc says nothing more
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def cmd_dump_tasks(args: argparse.Namespace) -> int:
    from daemon.runtime.process import RunFiles, signal_process  # noqa: PLC0415

    located = _locate(args)
    if isinstance(located, int):
        return located
    settings, found = located
    if not found.running or found.pid is None:
        print(f"awsd: {_not_running(settings, found)}", file=sys.stderr)
        return EX_UNAVAILABLE
    path = RunFiles(settings.state_dir).tasks
    before = _stamp(path)
    failure = signal_process(found.pid, signal.SIGUSR1)
    if failure:
        print(f"awsd: {failure}", file=sys.stderr)
        return 1
    if found.via != "pid file":  # its state directory is not ours to read
        print(f"sent SIGUSR1 to pid {found.pid}: the dump is in the daemon's log")
        return 0
    give_up = time.monotonic() + 10.0
    while _stamp(path) == before:
        if time.monotonic() >= give_up:
            print(
                f"awsd: sent SIGUSR1 to pid {found.pid}, but no dump appeared in {path}: the "
                "event loop may be blocked; the dump, if any, is in the daemon's log",
                file=sys.stderr,
            )
            return 1
        time.sleep(POLL)
    try:
        dump = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"awsd: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dump, indent=2))
        return 0
    tasks = dump.get("tasks") or []
    when = time.strftime("%H:%M:%S", time.localtime(dump.get("at", 0)))
    print(f"awsd {settings.env} (pid {found.pid}): {len(tasks)} tasks at {when}")
    for task in tasks:
        print(f"  {task.get('task')}")
        for frame in task.get("awaiting") or []:  # outermost first, as in a traceback
            print(f"      {frame}")
    return 0


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino)
