"""The outbox's SQLite layer: plain synchronous functions, always called from one thread.

Schema: `outbox` holds messages waiting for delivery (ids only grow, so id order is acceptance
order); `dead` holds messages AWS rejected for good, kept for inspection; `outcomes` the recent
fates of messages that left (delivered, dropped), written in the transaction that removes them
and trimmed to a bound. WAL mode lets `awsd outbox` read while the daemon writes. The file and
its WAL are created 0600 in a 0700 directory (`base/files.py`): they hold message bodies.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.base.files import is_disk_full, sqlite_file
from daemon.outbox.outcomes import Fate, MessageStatus

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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY,
    fate TEXT NOT NULL,
    reason TEXT,
    at REAL NOT NULL,
    message_id TEXT
);
"""
WAL_LIMIT = 1024 * 1024
"""About the most bytes the WAL grows to before a checkpoint (and is truncated to after one), so
a burst does not keep its space on a small state directory."""


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
        self.outcomes = 0
        """Rows in `outcomes` (about: trimmed in steps)."""
        try:
            sqlite_file(path)
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_LIMIT // 4096}")
            self.conn.executescript(SCHEMA)
            self.outcomes = int(self.conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])
        except (OSError, sqlite3.Error) as exc:
            hint = (
                "the state directory is full"
                if is_disk_full(exc)
                else "is its directory writable? set runtime.state_dir or outbox.path"
            )
            raise StoreUnavailable(f"cannot open the outbox at {path}: {exc} ({hint})") from exc

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction (one fsync under `durability = full`) for a group of statements."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) may already have ended the transaction.
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise

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

    def head(
        self, kind: str, target: str, limit: int, max_bytes: int, exclude: Collection[int] = ()
    ) -> list[Item]:
        """The oldest messages of one destination, at most `limit` and about `max_bytes`,
        leaving out `exclude` (settled in memory, not yet on disk)."""
        rows = self.conn.execute(
            "SELECT id, kind, target, body, origin, size, created, attempts FROM outbox "
            "WHERE kind = ? AND target = ? ORDER BY id LIMIT ?",
            (kind, target, limit + len(exclude)),
        ).fetchall()
        items: list[Item] = []
        total = 0
        for row in rows:
            if row[0] in exclude:
                continue
            if len(items) >= limit or (items and total + row[5] > max_bytes):
                break
            total += row[5]
            items.append(
                Item(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], row[7])
            )
        return items

    def settle(
        self,
        settled: Sequence[MessageStatus],
        retried: dict[int, str],
        *,
        keep_dead: int,
        keep_outcomes: int,
    ) -> int:
        """One transaction for a batch's fate: delivered messages leave (their outcome kept),
        dead ones move to `dead` (trimmed to `keep_dead`), retried ones count an attempt.
        Returns how many dead letters were trimmed."""
        delivered = [s for s in settled if s.fate is Fate.DELIVERED]
        dead = [s for s in settled if s.fate is Fate.DEAD]
        if not (delivered or dead or retried):
            return 0
        trimmed = 0
        with self._tx():
            if delivered:
                self.conn.executemany(
                    "DELETE FROM outbox WHERE id = ?", [(s.id,) for s in delivered]
                )
                self._record(delivered)
            if retried:
                self.conn.executemany(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                    [(error[:1000], i) for i, error in retried.items()],
                )
            if dead:
                trimmed = self._bury(dead, keep_dead)
            self._trim_outcomes(keep_outcomes)
        return trimmed

    def _bury(self, dead: Sequence[MessageStatus], keep: int) -> int:
        for s in dead:
            self.conn.execute(
                "INSERT OR REPLACE INTO dead (id, kind, target, body, origin, created, failed, "
                "attempts, error) SELECT id, kind, target, body, origin, created, ?, "
                "attempts + 1, ? FROM outbox WHERE id = ?",
                (s.at or time.time(), (s.reason or "")[:1000], s.id),
            )
            self.conn.execute("DELETE FROM outbox WHERE id = ?", (s.id,))
        trimmed = self.conn.execute(
            "DELETE FROM dead WHERE id NOT IN (SELECT id FROM dead ORDER BY id DESC LIMIT ?)",
            (keep,),
        ).rowcount
        return int(trimmed)

    def _record(self, settled: Sequence[MessageStatus]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO outcomes (id, fate, reason, at, message_id) "
            "VALUES (?, ?, ?, ?, ?)",
            [(s.id, str(s.fate), s.reason, s.at or time.time(), s.message_id) for s in settled],
        )
        self.outcomes += len(settled)

    def _trim_outcomes(self, keep: int) -> None:
        # In steps of a tenth, so trimming costs one indexed range delete now and then.
        if self.outcomes <= keep + max(1, keep // 10):
            return
        self.conn.execute(
            "DELETE FROM outcomes WHERE id <= (SELECT id FROM outcomes ORDER BY id DESC "
            "LIMIT 1 OFFSET ?)",
            (keep,),
        )
        self.outcomes = int(self.conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def drop_oldest(
        self, count: int, size: int, *, reason: str, keep_outcomes: int
    ) -> list[tuple[int, str, str, int, str]]:
        """Delete the oldest messages until `count` and `size` are freed, recording them as
        dropped for `reason`; return (id, kind, target, size, origin) of each."""
        dropped: list[tuple[int, str, str, int, str]] = []
        freed_size = 0
        rows = self.conn.execute("SELECT id, kind, target, size, origin FROM outbox ORDER BY id")
        for row in rows:
            if len(dropped) >= count and freed_size >= size:
                break
            dropped.append((int(row[0]), str(row[1]), str(row[2]), int(row[3]), str(row[4])))
            freed_size += int(row[3])
        if dropped:
            now = time.time()
            with self._tx():
                self.conn.executemany("DELETE FROM outbox WHERE id = ?", [(d[0],) for d in dropped])
                self._record([MessageStatus(d[0], Fate.DROPPED, reason, now) for d in dropped])
                self._trim_outcomes(keep_outcomes)
        return dropped

    def touch(self) -> None:
        """A small real write: proves the file takes writes again."""
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('checked', ?)", (str(time.time()),)
        )

    def status(self, item_id: int) -> MessageStatus | None:
        """What the file knows of a message: waiting, dead, or a recorded outcome."""
        if self.conn.execute("SELECT 1 FROM outbox WHERE id = ?", (item_id,)).fetchone():
            return MessageStatus(item_id, Fate.ACCEPTED)
        row = self.conn.execute("SELECT error, failed FROM dead WHERE id = ?", (item_id,))
        dead = row.fetchone()
        if dead:
            return MessageStatus(item_id, Fate.DEAD, str(dead[0]), float(dead[1]))
        row = self.conn.execute(
            "SELECT fate, reason, at, message_id FROM outcomes WHERE id = ?", (item_id,)
        )
        found = row.fetchone()
        if found:
            return MessageStatus(item_id, Fate(found[0]), found[1], float(found[2]), found[3])
        return None

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
