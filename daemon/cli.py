"""The `awsd` command line: run the daemon, check a config, print its JSON Schema.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 78 (EX_CONFIG) invalid configuration.
A bad config prints every problem (file, field path, reason) to stderr, never a traceback.
Heavy imports (aioboto3, aiohttp) happen only in commands that need them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from daemon import __version__
from daemon.config import EX_CONFIG, ConfigError, LoadedConfig, load_config, select_config_file


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
    return load_config(path)


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


def cmd_run(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    early = None
    if loaded.config.aws.local:  # boot the local endpoint while the daemon imports its modules
        from daemon.local_aws import spawn_early  # noqa: PLC0415

        try:
            early = spawn_early(loaded.config.aws.local_port)
        except RuntimeError as exc:
            print(f"awsd: {exc}", file=sys.stderr)
            return 1
    from daemon.app import Daemon  # noqa: PLC0415
    from daemon.logs import configure_logging, set_context  # noqa: PLC0415

    configure_logging(loaded.config.log)
    set_context(env=loaded.config.env, config_version=loaded.version)
    return run_async(Daemon(loaded, local=early).run())


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    if not args.quiet:
        from daemon.redact import redact  # noqa: PLC0415

        files = " <- ".join(str(f) for f in loaded.files)
        print(
            f"# awsd {__version__}: configuration OK (env {loaded.config.env}, "
            f"config_version {loaded.version})\n# files: {files}"
        )
        print(json.dumps(redact(loaded.config.model_dump(mode="json")), indent=2))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from daemon.config import Config  # noqa: PLC0415

    if args.markdown:
        from daemon.config.reference import render_reference  # noqa: PLC0415

        print(render_reference(), end="")
        return 0

    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "awsd configuration"
    print(json.dumps(schema, indent=2))
    return 0


CommandRegistrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
EXTRA_COMMANDS: list[CommandRegistrar] = []
"""Functions that add subcommands (`sub.add_parser(...)`); capability modules register here."""

from daemon.probes.cli import register as _register_probe  # noqa: E402 (light: argparse only)

EXTRA_COMMANDS.append(_register_probe)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="awsd", description="AWS edge daemon")
    parser.add_argument("--version", action="version", version=f"awsd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    add_config_args(run)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check-config", help="validate a config and print it resolved (exit 78 when invalid)"
    )
    add_config_args(check)
    check.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    check.set_defaults(func=cmd_check_config)

    schema = sub.add_parser("schema", help="print the JSON Schema of the config file")
    schema.add_argument(
        "--markdown",
        action="store_true",
        help="print the configuration reference as Markdown instead",
    )
    schema.set_defaults(func=cmd_schema)
    from daemon import cloudwatch_cli, publish_cli  # noqa: PLC0415
    from daemon.outbox import cli as outbox_cli  # noqa: PLC0415
    from daemon.resources import commands as resources_cli  # noqa: PLC0415

    registrars = (
        outbox_cli.register,
        cloudwatch_cli.register,
        resources_cli.register,
        publish_cli.register,
    )
    for register in (*registrars, *EXTRA_COMMANDS):
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is not cmd_run:
        gc.enable()  # off while loading (daemon.entry); `run` enables it once started
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
