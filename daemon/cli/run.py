"""`awsd run`, `awsd check-config` and `awsd schema`: the daemon itself and its config file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from daemon import __version__
from daemon.cli.common import add_config_args, config_failure, load_from_args, run_async
from daemon.config import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def cmd_run(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    early = None
    if loaded.config.aws.local:  # boot the local endpoint while the daemon imports its modules
        from daemon.core.local_aws import spawn_early  # noqa: PLC0415

        try:
            early = spawn_early(loaded.config.aws.local_port)
        except RuntimeError as exc:
            print(f"awsd: {exc}", file=sys.stderr)
            return 1
    from daemon.core.logs import configure_logging, set_context  # noqa: PLC0415
    from daemon.runtime.app import Daemon  # noqa: PLC0415
    from daemon.workers import CATALOG  # noqa: PLC0415

    configure_logging(loaded.config.log)
    set_context(env=loaded.config.env, config_version=loaded.version)
    return run_async(Daemon(loaded, catalog=CATALOG, local=early, process_title=True).run())


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    if not args.quiet:
        from daemon.base.redact import configure_redaction, redact  # noqa: PLC0415

        configure_redaction(loaded.config.log.redact_query)
        files = " <- ".join(str(f) for f in loaded.files)
        resolved = redact(loaded.config.model_dump(mode="json"))
        print(
            f"# awsd {__version__}: configuration OK (env {loaded.config.env}, "
            f"config_version {loaded.version})\n# files: {files}"
        )
        if loaded.overrides:
            print("# set by the environment (over the files):")
            for path, variable in loaded.overrides:
                shown = json.dumps(_at(resolved, path), default=str)
                print(f"#   {path} = {shown}  <- {variable}")
        print(json.dumps(resolved, indent=2))
    return 0


def _at(data: Any, dotted: str) -> Any:
    """The value at a dotted path of the resolved config (as check-config prints it)."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return "(not a config value)"
        data = data[part]
    return data


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
