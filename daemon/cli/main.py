"""`awsd`: the parser, built from the static list of command modules, and `main()`."""

from __future__ import annotations

import argparse
import gc

from daemon import __version__
from daemon.cli import cloudwatch, control, invalidate, outbox, probe, publish, resources, run

COMMANDS = (run, control, publish, outbox, probe, cloudwatch, resources, invalidate)
"""Every command module; each has `register(subparsers)` adding its subcommands."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="awsd", description="AWS edge daemon")
    parser.add_argument("--version", action="version", version=f"awsd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is not run.cmd_run:
        gc.enable()  # off while loading (daemon.cli.entry); `run` enables it once started
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
