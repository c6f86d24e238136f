"""`awsd invalidate DISTRIBUTION [PATH ...]`: drop cached paths from a CloudFront distribution.

The distribution is a declared one's logical name, an id or an ARN; no path means `/*`. The
command returns once CloudFront accepted the invalidation (it completes within minutes), or with
`--wait` once it completed. It goes through `daemon.core.invalidation`, the same code the
daemon's workers use. With `aws.local = true` it attaches to the running daemon's local
endpoint like `awsd plan` does.

Exit codes: 0 accepted (or completed with `--wait`), 1 failure, 2 usage error, 78 invalid
configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from daemon.cli.common import add_config_args, config_failure, load_from_args, run_async
from daemon.config import ConfigError
from daemon.config.models import Config

EX_OK, EX_ERROR = 0, 1
POLL_EVERY = 5.0


def completed(status: str) -> bool:
    return status.lower() == "completed"  # AWS says Completed; some emulators COMPLETED


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "invalidate",
        help="drop cached paths from a CloudFront distribution (default: /*)",
    )
    add_config_args(cmd)
    cmd.add_argument("distribution", help="a declared distribution's name, or an id or ARN")
    cmd.add_argument("paths", nargs="*", metavar="PATH", help="paths starting with / (/*)")
    cmd.add_argument(
        "--reference",
        metavar="REF",
        help="caller reference: the same one again is not invalidated twice (default: new)",
    )
    cmd.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=900.0,
        metavar="SECONDS",
        help="wait until CloudFront completed it (at most SECONDS, default 900)",
    )
    cmd.add_argument("--json", action="store_true", help="print the invalidation as JSON")
    cmd.set_defaults(func=cmd_invalidate)


def cmd_invalidate(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    from daemon.core.invalidation import normalise_paths  # noqa: PLC0415

    try:
        normalise_paths(args.paths)
    except ValueError as exc:
        print(f"awsd: {exc}", file=sys.stderr)
        return 2
    from daemon.cli.resources import _quiet_logs  # noqa: PLC0415

    _quiet_logs()
    return run_async(_invalidate(loaded.config, args, out=sys.stdout))


async def _invalidate(config: Config, args: argparse.Namespace, *, out: TextIO) -> int:
    from daemon.cli.resources import session  # noqa: PLC0415
    from daemon.core.invalidation import Invalidator  # noqa: PLC0415
    from daemon.reconcile.context import explain  # noqa: PLC0415

    try:
        async with session(config) as ctx:
            invalidator = Invalidator(ctx.clients, ctx.targets)
            done = await invalidator.invalidate_on(
                args.distribution, args.paths, reference=args.reference
            )
            status = done.status
            if args.wait is not None:
                loop = asyncio.get_running_loop()
                until = loop.time() + args.wait
                while not completed(status) and loop.time() < until:
                    await asyncio.sleep(min(POLL_EVERY, max(0.0, until - loop.time())))
                    status = await invalidator.status(done.distribution_id, done.id)
    except Exception as exc:  # noqa: BLE001 - one clear line, never a traceback
        print(f"awsd: cannot invalidate: {explain(exc)}", file=sys.stderr)
        return EX_ERROR
    if args.json:
        out.write(json.dumps({**done.to_json(), "status": status}, indent=2) + "\n")
    else:
        out.write(
            f"invalidation {done.id} of distribution {done.distribution_id}: {status} "
            f"({', '.join(done.paths)})\n"
        )
    if args.wait is not None and not completed(status):
        print(f"awsd: not completed after {args.wait:g} s (still {status})", file=sys.stderr)
        return EX_ERROR
    return EX_OK
