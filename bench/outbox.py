"""The outbox's truth, measured: what recording outcomes and checking free space cost.

1. Settling delivered messages in batches of 10 (one transaction each, fsync'd under
   `durability = "full"`): deleting them only (what the outbox did before it kept a record of
   outcomes) beside `Store.settle`, which also writes each message's outcome in the same
   transaction, side by side on the same disk, with the ratio.
2. The free-space check intake makes before each group commit (`statvfs`), per call.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import timeit
from pathlib import Path

from daemon.base.files import free_bytes
from daemon.outbox.outcomes import Fate, MessageStatus
from daemon.outbox.store import NewMessage, Store

MESSAGES = 3000
BATCH = 10
ROUNDS = 3


def _filled(path: str, durability: str) -> tuple[Store, list[int]]:
    store = Store(path, durability=durability)
    body = {"message": "x" * 200}
    ids = store.insert([NewMessage("sns", "t", body, "bench", 210) for _ in range(MESSAGES)])
    return store, ids


def _delete_only(store: Store, ids: list[int]) -> None:
    for i in range(0, len(ids), BATCH):
        batch = ids[i : i + BATCH]
        store.conn.execute("BEGIN IMMEDIATE")
        store.conn.executemany("DELETE FROM outbox WHERE id = ?", [(x,) for x in batch])
        store.conn.execute("COMMIT")


def _settle(store: Store, ids: list[int]) -> None:
    now = time.time()
    for i in range(0, len(ids), BATCH):
        batch = [MessageStatus(x, Fate.DELIVERED, None, now, "m") for x in ids[i : i + BATCH]]
        store.settle(batch, {}, keep_dead=10_000, keep_outcomes=10_000)


def _rate(variant: object, directory: Path, durability: str, n: int) -> float:
    store, ids = _filled(str(directory / f"o{n}.sqlite3"), durability)
    began = time.perf_counter()
    variant(store, ids)  # type: ignore[operator]
    took = time.perf_counter() - began
    store.close()
    return MESSAGES / took


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="awsd-bench-outbox-", dir=".") as tmp:
        directory = Path(tmp)
        print(f"settling {MESSAGES} delivered messages in batches of {BATCH} (median of {ROUNDS})")
        print(f"{'durability':<11} {'delete only':>14} {'with outcomes':>14} {'ratio':>6}")
        n = 0
        for durability in ("full", "normal"):
            rates = {}
            for name, variant in (("delete", _delete_only), ("settle", _settle)):
                runs = []
                for _ in range(ROUNDS):
                    n += 1
                    runs.append(_rate(variant, directory, durability, n))
                rates[name] = statistics.median(runs)
            print(
                f"{durability:<11} {rates['delete']:>10.0f} m/s {rates['settle']:>10.0f} m/s "
                f"{rates['settle'] / rates['delete']:>6.2f}"
            )
        per_call = min(timeit.repeat(lambda: free_bytes(tmp), number=10_000, repeat=3)) / 10_000
        print(f"free-space check before a group commit: {per_call * 1e6:.1f} us per call")
