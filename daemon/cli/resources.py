"""`awsd plan`, `awsd apply` and `awsd iam-policy`.

Exit codes, like Terraform's `plan -detailed-exitcode`: `plan` 0 no changes, 2 changes, 1 an
error (a resource that cannot be read, a blocked change), 78 an invalid config. `apply` 0 when
everything applied (or nothing had to), 1 otherwise.

With `aws.local = true` the commands attach to the moto server the running daemon of the config
uses (its run files say where, whatever port it got; else `aws.local_port`, 4566 in
configs/local.toml), so they see the same account as `make run`. When nothing answers there,
they start an empty one for the command and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TextIO, cast

from daemon.cli.common import (
    add_config_args,
    config_failure,
    load_from_args,
    run_async,
    running_aws_endpoint,
)
from daemon.config import ConfigError
from daemon.config.models import Config, LogConfig

if TYPE_CHECKING:
    from daemon.reconcile.context import Context

EX_OK, EX_ERROR = 0, 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser(
        "plan",
        help="show what `apply` would change in AWS (exit 0 none, 2 changes, 1 error)",
    )
    add_config_args(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=cmd_plan)

    apply = sub.add_parser("apply", help="make AWS match the declared resources")
    add_config_args(apply)
    apply.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    apply.set_defaults(func=cmd_apply)

    iam = sub.add_parser(
        "iam-policy", help="print the least-privilege IAM policy the daemon needs for a config"
    )
    add_config_args(iam)
    iam.add_argument(
        "--account",
        default="*",
        metavar="ID",
        help="AWS account id to put in the ARNs (default: *, any account)",
    )
    iam.add_argument("--region", help="region for the ARNs (default: aws.region, else *)")
    iam.set_defaults(func=cmd_iam_policy)


class _Stderr(io.TextIOBase):
    """Whatever sys.stderr is when a line is written (it may be replaced after setup)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _quiet_logs() -> None:
    # stdout belongs to the plan (and to --json); only warnings, on stderr.
    from daemon.core.logs import configure_logging  # noqa: PLC0415

    stream = cast(TextIO, _Stderr())
    configure_logging(LogConfig(level="warning", format="console"), stream=stream)


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    _quiet_logs()
    return run_async(_plan(loaded.config, as_json=args.json, out=sys.stdout))


def cmd_apply(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    if not args.auto_approve and not sys.stdin.isatty():
        print(
            "awsd: apply asks for confirmation and stdin is not a terminal; "
            "pass --auto-approve to apply without asking",
            file=sys.stderr,
        )
        return EX_ERROR
    _quiet_logs()
    return run_async(_apply(loaded.config, ask=not args.auto_approve, out=sys.stdout))


def cmd_iam_policy(args: argparse.Namespace) -> int:
    try:
        loaded = load_from_args(args)
    except ConfigError as exc:
        return config_failure(exc)
    from daemon.core.iam import MANAGED_POLICY_LIMIT, policy_size  # noqa: PLC0415
    from daemon.workers import CATALOG  # noqa: PLC0415

    document = CATALOG.policy(loaded.config, account=args.account, region=args.region)
    print(json.dumps(document, indent=2))
    size = policy_size(document)
    if size > MANAGED_POLICY_LIMIT:
        print(
            f"awsd: the policy has {size} characters, above IAM's {MANAGED_POLICY_LIMIT} for a "
            "managed policy: split it, or attach it as several policies",
            file=sys.stderr,
        )
    return EX_OK


@contextlib.asynccontextmanager
async def session(config: Config) -> AsyncIterator[Context]:
    """A started `Context` on the account the config points at (attaching to local moto)."""
    from daemon.core.aws import AwsClients  # noqa: PLC0415
    from daemon.core.local_aws import answers, attach_or_start  # noqa: PLC0415
    from daemon.reconcile.context import Context  # noqa: PLC0415
    from daemon.workers import CATALOG  # noqa: PLC0415

    endpoint, local = None, None
    running = running_aws_endpoint(config)
    if running and await answers(running):
        endpoint = running
    elif config.aws.local:
        endpoint, local = await attach_or_start(config.aws.local_port)
        if local is not None:
            print(
                f"awsd: no local AWS endpoint answered on port {config.aws.local_port}; "
                "using a new, empty one for this command (is `make run` running?)",
                file=sys.stderr,
            )
    clients = AwsClients(config.aws, local_endpoint=endpoint)
    try:
        ctx = Context(config, clients, used=CATALOG.worker_references(config))
        await ctx.start()
        yield ctx
    finally:
        await clients.close()
        if local is not None:
            await local.stop()


async def _plan(config: Config, *, as_json: bool, out: TextIO) -> int:
    from daemon.reconcile.context import explain  # noqa: PLC0415
    from daemon.reconcile.plan import make_plan  # noqa: PLC0415
    from daemon.reconcile.render import render_plan  # noqa: PLC0415

    try:
        async with session(config) as ctx:
            plan = await make_plan(ctx)
    except Exception as exc:  # noqa: BLE001 - one clear line, never a traceback
        print(f"awsd: cannot plan: {explain(exc)}", file=sys.stderr)
        return EX_ERROR
    if as_json:
        out.write(json.dumps(plan.to_json(), indent=2, default=str) + "\n")
    else:
        out.write(render_plan(plan))
    return plan.exit_code


async def _apply(config: Config, *, ask: bool, out: TextIO) -> int:
    from daemon.reconcile.apply import Applier, Outcome  # noqa: PLC0415
    from daemon.reconcile.context import explain  # noqa: PLC0415
    from daemon.reconcile.plan import ResourcePlan, make_plan  # noqa: PLC0415
    from daemon.reconcile.render import (  # noqa: PLC0415
        render_apply_summary,
        render_plan,
        render_progress,
    )

    def progress(stage: str, res: ResourcePlan, detail: str, outcome: Outcome | None) -> None:
        out.write(render_progress(stage, res, detail, outcome) + "\n")
        out.flush()

    try:
        async with session(config) as ctx:
            plan = await make_plan(ctx)
            out.write(render_plan(plan))
            if not plan.changes:
                return EX_ERROR if plan.failures or plan.blocked else EX_OK
            if ask and not await _confirm(plan.env, ctx.account, ctx.region, out):
                out.write("Apply cancelled.\n")
                return EX_ERROR
            out.write("\n")
            report = await Applier(ctx, progress=progress).apply(plan)
    except Exception as exc:  # noqa: BLE001 - one clear line, never a traceback
        print(f"awsd: cannot apply: {explain(exc)}", file=sys.stderr)
        return EX_ERROR
    out.write("\n" + render_apply_summary(report) + "\n")
    if plan.blocked or plan.failures or report.count("blocked"):
        out.write("Blocked or unreadable resources were left as they are (see the plan above).\n")
    return EX_OK if report.ok and not plan.blocked and not plan.failures else EX_ERROR


async def _confirm(env: str, account: str, region: str, out: TextIO) -> bool:
    out.write(
        f"\nApply these changes to environment {env!r} in account {account} ({region})? [y/N] "
    )
    out.flush()
    answer = await asyncio.to_thread(sys.stdin.readline)
    return answer.strip().lower() in ("y", "yes")
