"""The outbox's SQLite layer: plain synchronous functions, always called from one thread.

Schema: `outbox` holds messages waiting for delivery (ids only grow, so id order is acceptance
order); `dead` holds messages AWS rejected for good, kept for inspection. WAL mode lets
`awsd outbox` read while the daemon writes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    origin TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_target ON outbox (kind, target, id);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    origin TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    failed REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Item:
    """One message waiting in the outbox."""

    id: int
    kind: str
    target: str
    body: dict[str, Any]
    origin: str
    size: int
    created: float
    """Wall-clock time it was accepted."""
    attempts: int


@dataclass(frozen=True, slots=True)
class NewMessage:
    kind: str
    target: str
    body: dict[str, Any]
    origin: str
    size: int


class StoreUnavailable(Exception):
    """The SQLite file cannot be opened or created."""


class Store:
    """Owns one SQLite connection; not thread-safe by itself (the Outbox serialises calls)."""

    def __init__(self, path: str, *, durability: str) -> None:
        self.path = path
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"cannot open the outbox at {path}: {exc} (is its directory writable? set "
                "runtime.state_dir or outbox.path)"
            ) from None
        self.conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction (one fsync under `durability = full`) for a group of statements."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def totals(self) -> tuple[int, int]:
        count, size = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
        ).fetchone()
        return int(count), int(size)

    def dead_total(self) -> int:
        """How many messages the dead-letter table holds."""
        return int(self.conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0])

    def targets(self) -> list[tuple[str, str, int]]:
        """Each destination with waiting messages, and how many wait."""
        rows = self.conn.execute("SELECT kind, target, COUNT(*) FROM outbox GROUP BY kind, target")
        return [(str(k), str(t), int(i)) for k, t, i in rows]

    def insert(self, messages: Sequence[NewMessage]) -> list[int]:
        now = time.time()
        ids = []
        with self._tx():
            for m in messages:
                cur = self.conn.execute(
                    "INSERT INTO outbox (kind, target, body, origin, size, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        m.kind,
                        m.target,
                        json.dumps(m.body, separators=(",", ":")),
                        m.origin,
                        m.size,
                        now,
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def head(self, kind: str, target: str, limit: int, max_bytes: int) -> list[Item]:
        """The oldest messages of one destination, at most `limit` and about `max_bytes`."""
        rows = self.conn.execute(
            "SELECT id, kind, target, body, origin, size, created, attempts FROM outbox "
            "WHERE kind = ? AND target = ? ORDER BY id LIMIT ?",
            (kind, target, limit),
        ).fetchall()
        items: list[Item] = []
        total = 0
        for row in rows:
            if items and total + row[5] > max_bytes:
                break
            total += row[5]
            items.append(
                Item(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], row[7])
            )
        return items

    def delete(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if ids:
            with self._tx():
                self.conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def failed(self, errors: dict[int, str]) -> None:
        if errors:
            with self._tx():
                self.conn.executemany(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                    [(error[:1000], i) for i, error in errors.items()],
                )

    def bury(self, errors: dict[int, str], keep: int) -> int:
        """Move rejected messages to `dead`, trimming it to `keep`; return how many were trimmed."""
        if not errors:
            return 0
        now = time.time()
        with self._tx():
            for i, error in errors.items():
                self.conn.execute(
                    "INSERT OR REPLACE INTO dead (id, kind, target, body, origin, created, failed, "
                    "attempts, error) SELECT id, kind, target, body, origin, created, ?, "
                    "attempts + 1, ? FROM outbox WHERE id = ?",
                    (now, error[:1000], i),
                )
                self.conn.execute("DELETE FROM outbox WHERE id = ?", (i,))
            trimmed = self.conn.execute(
                "DELETE FROM dead WHERE id NOT IN (SELECT id FROM dead ORDER BY id DESC LIMIT ?)",
                (keep,),
            ).rowcount
        return int(trimmed)

    def drop_oldest(self, count: int, size: int) -> list[tuple[int, str, str, int]]:
        """Delete the oldest messages until `count` and `size` are freed; return what went."""
        dropped: list[tuple[int, str, str, int]] = []
        freed_size = 0
        rows = self.conn.execute("SELECT id, kind, target, size FROM outbox ORDER BY id")
        for row in rows:
            if len(dropped) >= count and freed_size >= size:
                break
            dropped.append((int(row[0]), str(row[1]), str(row[2]), int(row[3])))
            freed_size += int(row[3])
        self.delete(d[0] for d in dropped)
        return dropped

    def contains(self, item_id: int) -> str:
        if self.conn.execute("SELECT 1 FROM outbox WHERE id = ?", (item_id,)).fetchone():
            return "pending"
        if self.conn.execute("SELECT 1 FROM dead WHERE id = ?", (item_id,)).fetchone():
            return "dead"
        return "delivered"

    def with_origin(self, origin: str) -> list[int]:
        """Ids of the waiting and dead messages from `origin` (delivered ones are gone)."""
        rows = self.conn.execute(
            "SELECT id FROM outbox WHERE origin = ? UNION SELECT id FROM dead WHERE origin = ? "
            "ORDER BY id",
            (origin, origin),
        )
        return [int(r[0]) for r in rows]

    def oldest_created(self) -> float | None:
        row = self.conn.execute("SELECT MIN(created) FROM outbox").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def listing(self, table: str, limit: int) -> list[dict[str, Any]]:
        assert table in ("outbox", "dead")
        cur = self.conn.execute(f"SELECT * FROM {table} ORDER BY id LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def requeue_dead(self) -> int:
        with self._tx():
            moved = self.conn.execute(
                "INSERT INTO outbox (kind, target, body, origin, size, created, attempts, "
                "last_error) SELECT kind, target, body, origin, length(body), created, attempts, "
                "error FROM dead ORDER BY id"
            ).rowcount
            self.conn.execute("DELETE FROM dead")
        return int(moved)
