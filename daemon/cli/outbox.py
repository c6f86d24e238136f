"""`awsd outbox`: look into the outbox of a config (waiting and dead-letter messages) and put
dead letters back for another attempt. Safe while the daemon runs (SQLite WAL)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from daemon.cli.common import add_config_args  # noqa: PLC0415

    parser = sub.add_parser("outbox", help="show waiting or dead-letter outbox messages")
    add_config_args(parser)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dead", action="store_true", help="list the dead-letter table")
    group.add_argument(
        "--requeue-dead", action="store_true", help="move every dead letter back into the outbox"
    )
    parser.add_argument("--limit", type=int, default=100, help="most messages listed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from daemon.cli.common import config_failure, load_from_args  # noqa: PLC0415
    from daemon.config import ConfigError  # noqa: PLC0415
    from daemon.outbox.core import outbox_path  # noqa: PLC0415
    from daemon.outbox.store import Store, StoreUnavailable  # noqa: PLC0415

    try:
        config = load_from_args(args).config
    except ConfigError as exc:
        return config_failure(exc)
    path = outbox_path(config)
    if path == ":memory:" or not Path(path).exists():
        print(f"awsd: no outbox at {path} (nothing was ever queued)", file=sys.stderr)
        return 0
    try:
        store = Store(path, durability=config.outbox.durability)
    except StoreUnavailable as exc:
        print(f"awsd: {exc}", file=sys.stderr)
        return 1
    try:
        if args.requeue_dead:
            moved = store.requeue_dead()
            print(
                f"moved {moved} dead letters back into the outbox; the daemon delivers them "
                "after its next start or reload"
                if moved
                else "no dead letters to move"
            )
            return 0
        if args.dead:
            total = store.dead_total()
            shown = f" (the first {args.limit} below)" if total > args.limit else ""
            head = f"{total} dead letters{shown}" if total else "no dead letters"
            print(f"# {head} in {path}", file=sys.stderr)
        else:
            count, size = store.totals()
            print(f"# {count} waiting, {size} bytes, in {path}", file=sys.stderr)
        for row in store.listing("dead" if args.dead else "outbox", args.limit):
            print(json.dumps(_readable(row), ensure_ascii=False))
    finally:
        store.close()
    return 0


def _readable(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["body"] = json.loads(out["body"])
    return out
