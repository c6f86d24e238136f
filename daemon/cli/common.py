"""What every `awsd` subcommand shares: the config arguments, loading a config from them, the
exit code of a bad config, running a coroutine on the daemon's event loop, and finding the
daemon that runs with a config.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 78 (EX_CONFIG) invalid configuration.
A bad config prints every problem (file, field path, reason) to stderr, never a traceback.

The daemon of a config is the one holding the pid file of its state directory: its run files
(`daemon.runtime.process`) say where it listens, so commands find its health server and its
embedded AWS endpoint whatever ports environment overrides gave it. When this user may not read
the state directory (the daemon's own, 0700), the configured health port is asked instead, and
its /status must name the same state directory: another daemon on that port is never taken for
this one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import EX_CONFIG, Config, ConfigError, LoadedConfig, select_config_file


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--env",
        "-e",
        help="environment name: NAME.toml in the config directory (default: AWSD_ENV)",
    )
    group.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help="config file path (default: AWSD_CONFIG, else /etc/awsd/config.toml)",
    )
    parser.add_argument(
        "--config-dir",
        metavar="DIR",
        help="where --env looks (default: AWSD_CONFIG_DIR, else /etc/awsd, then ./configs)",
    )


def load_from_args(args: argparse.Namespace) -> LoadedConfig:
    path = select_config_file(config=args.config, env=args.env, config_dir=args.config_dir)
    from daemon.workers import CATALOG  # noqa: PLC0415 - the worker kinds, for their checks

    return CATALOG.load(path)


def config_failure(exc: ConfigError) -> int:
    print(f"awsd: {exc.render()}", file=sys.stderr)
    return EX_CONFIG


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine on uvloop where it is installed, else on asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


# --- the daemon of a config ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """What finding a daemon needs from a config: where its state is, where it listens."""

    path: Path
    env: str
    state_dir: Path
    health_url: str | None
    """The configured health server (None: `health.port = 0`)."""
    shutdown_timeout: float

    @classmethod
    def of(cls, path: Path, config: Config) -> Settings:
        return cls(
            path=path,
            env=config.env,
            state_dir=Path(config.runtime.state_dir).absolute(),
            health_url=config.health.url if config.health.port else None,
            shutdown_timeout=config.runtime.shutdown_timeout,
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings of the chosen config, even when the file has errors elsewhere: `awsd stop`
    and `awsd status` must work while the file is being edited (with a warning); ConfigError
    only when the settings themselves are wrong or the file cannot be read."""
    from daemon.config import load_config  # noqa: PLC0415 - the models only: no worker checks

    try:
        path = select_config_file(config=args.config, env=args.env, config_dir=args.config_dir)
        loaded = load_config(path)
    except ConfigError as exc:
        found = _lenient(args, exc)
        print(
            f"awsd: warning: the config has {len(exc.issues)} problem(s) (awsd check-config "
            "shows them); the daemon is looked for with its runtime and health settings",
            file=sys.stderr,
        )
        return found
    return Settings.of(loaded.path, loaded.config)


def _lenient(args: argparse.Namespace, error: ConfigError) -> Settings:
    from pydantic import ValidationError  # noqa: PLC0415

    from daemon.config.loader import read_unvalidated  # noqa: PLC0415
    from daemon.config.models import HealthConfig, RuntimeConfig  # noqa: PLC0415

    path = select_config_file(config=args.config, env=args.env, config_dir=args.config_dir)
    data = read_unvalidated(path)
    try:
        runtime = RuntimeConfig.model_validate(data.get("runtime", {}))
        health = HealthConfig.model_validate(data.get("health", {}))
    except ValidationError:
        raise error from None
    return Settings(
        path=path,
        env=str(data.get("env", "?")),
        state_dir=Path(runtime.state_dir).absolute(),
        health_url=health.url if health.port else None,
        shutdown_timeout=runtime.shutdown_timeout,
    )


@dataclass(frozen=True, slots=True)
class Found:
    """The daemon of a config, or why there is none."""

    pid: int | None
    health_url: str | None
    aws_endpoint: str | None
    via: str
    """How it was found: "pid file" or "health port"; "" when not running."""
    problem: str = ""
    """Why it was not found (not running; files this user may not read)."""
    starting: bool = False
    """Running, but it has not said where it listens yet."""

    @property
    def running(self) -> bool:
        return self.pid is not None


def find_daemon(settings: Settings) -> Found:
    from daemon.runtime.process import NotReadable, RunFiles  # noqa: PLC0415

    try:
        running = RunFiles(settings.state_dir).running()
    except NotReadable as exc:
        return ask_health_port(settings, str(exc))
    if running is not None:
        return Found(
            running.pid,
            running.health_url,
            running.aws_endpoint,
            "pid file",
            starting=running.starting,
        )
    return Found(None, None, None, "", f"not running (no awsd holds {settings.state_dir}/awsd.pid)")


def ask_health_port(settings: Settings, unreadable: str) -> Found:
    """The daemon answering on the configured health port, if its /status names the state
    directory of `settings` (used when this user may not read that directory)."""
    url = settings.health_url
    status = get_json(f"{url}/status") if url else None
    if not isinstance(status, dict):
        return Found(None, None, None, "", f"{unreadable}, and no awsd answers on {url}")
    where = (status.get("state_dir") or {}).get("path")
    if where is None or str(where) != str(settings.state_dir):
        return Found(
            None,
            None,
            None,
            "",
            f"{unreadable}; the awsd on {url} (pid {status.get('pid')}) runs with state "
            f"directory {where}, not {settings.state_dir}",
        )
    aws = status.get("aws") or {}
    return Found(status.get("pid"), url, aws.get("local_endpoint"), "health port")


def get_json(url: str, timeout: float = 5.0) -> Any:
    """GET a JSON document from the daemon's loopback server; None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def running_aws_endpoint(config: Config) -> str | None:
    """The embedded AWS endpoint the running daemon of `config` uses (its run files say where,
    whatever port it got), or None (not running, not local, or not ours to read)."""
    from daemon.runtime.process import NotReadable, RunFiles  # noqa: PLC0415

    if not config.aws.local:
        return None
    try:
        running = RunFiles(Path(config.runtime.state_dir).absolute()).running()
    except NotReadable:
        return None
    return running.aws_endpoint if running is not None else None
