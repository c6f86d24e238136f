"""What every `awsd` subcommand shares: the config arguments, loading a config from them, the
exit code of a bad config, and running a coroutine on the daemon's event loop.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 78 (EX_CONFIG) invalid configuration.
A bad config prints every problem (file, field path, reason) to stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from daemon.config import EX_CONFIG, ConfigError, LoadedConfig, select_config_file


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
