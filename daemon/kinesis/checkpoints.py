"""Checkpoints: how far each shard has been processed, behind one interface with two stores.

A checkpoint names the last record whose processing finished: `position` is its sequence number
(or a sentinel: where to start when nothing was processed yet, or `SHARD_END` once a closed shard
was read to its end) and `subsequence` says how much of a KPL-aggregated record was done (0: all
of it; k > 0: its first k sub-records). Reading resumes AFTER a checkpoint, so a restart repeats
at most what was processed since the last one was written.

- `SqliteCheckpoints` — a local file (WAL, 0600), for one daemon per stream. All disk work runs
  on one dedicated thread, as the outbox does, so the event loop never waits for the disk. A
  checkpoint the disk refuses (full, failing) is kept in memory, reported to the state health
  record (/readyz degraded, /status, metrics, an event) and written by the next save or a retry
  every few seconds; reading goes on. Lost only if the process ends first: then the shard is
  re-read from the last checkpoint written, never skipped.
- `LeaseCheckpoints` (in `leasing.py`) — the DynamoDB lease table itself, the Kinesis Client
  Library way: a checkpoint is a conditional write that fails once the lease was lost.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from daemon.base.files import sqlite_file
from daemon.core.logs import get_logger
from daemon.core.storage import StateHealth

log = get_logger()
RETRY_EVERY = 5.0
"""Seconds between attempts to write checkpoints the disk refused."""

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP"
AT_SEQUENCE_NUMBER = "AT_SEQUENCE_NUMBER"
SHARD_END = "SHARD_END"
SENTINELS = frozenset({TRIM_HORIZON, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, SHARD_END})


@dataclass(frozen=True, slots=True)
class Checkpoint:
    position: str
    subsequence: int = 0

    @property
    def ended(self) -> bool:
        return self.position == SHARD_END

    @property
    def is_sequence(self) -> bool:
        return self.position not in SENTINELS

    def __str__(self) -> str:
        return f"{self.position}:{self.subsequence}" if self.subsequence else self.position


@dataclass(frozen=True, slots=True)
class ShardState:
    """What a store knows about one shard: its checkpoint and its parents."""

    checkpoint: Checkpoint
    parents: tuple[str, ...] = ()


class LeaseLost(Exception):
    """The checkpoint was refused: another daemon owns the shard now."""


class CheckpointStore(abc.ABC):
    """Checkpoints of one reader (one stream)."""

    @abc.abstractmethod
    async def load(self) -> dict[str, ShardState]:
        """Every shard the store knows, with its checkpoint and parents."""

    @abc.abstractmethod
    async def create(self, initial: dict[str, ShardState]) -> None:
        """Record starting checkpoints for shards not yet known (never overwriting one)."""

    @abc.abstractmethod
    async def save(self, shard: str, checkpoint: Checkpoint) -> None:
        """Write a checkpoint; raises LeaseLost when this daemon may no longer write it."""

    async def forget(self, shards: list[str]) -> None:  # noqa: B027 - optional
        """Drop shards that no longer exist in the stream (past retention)."""

    async def stream_created(self, created: float) -> bool:
        """Tell the store when the stream was created (epoch seconds). When its checkpoints were
        written for an earlier stream of the same name (deleted and created again, or a local
        endpoint started afresh), they are dropped and True is returned: their sequence numbers
        mean nothing in the new stream, and resuming after them would skip its first records.
        The lease store keeps its checkpoints (a fleet's lease table outlives one stream only if
        someone recreates the stream under it; delete the table then)."""
        return False

    async def close(self) -> None:  # noqa: B027 - optional
        """Release the store."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    reader TEXT NOT NULL,
    stream TEXT NOT NULL,
    shard TEXT NOT NULL,
    position TEXT NOT NULL,
    subsequence INTEGER NOT NULL DEFAULT 0,
    parents TEXT NOT NULL DEFAULT '[]',
    updated REAL NOT NULL,
    PRIMARY KEY (reader, stream, shard)
);
CREATE TABLE IF NOT EXISTS streams (
    reader TEXT NOT NULL,
    stream TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (reader, stream)
);
"""


class SqliteCheckpoints(CheckpointStore):
    """Checkpoints in a local SQLite file, keyed by reader, stream and shard."""

    def __init__(
        self, path: str, *, reader: str, stream: str, health: StateHealth | None = None
    ) -> None:
        self.path = path
        self.reader = reader
        self.stream = stream
        self.health = health
        self.name = f"kinesis-checkpoints:{reader}"
        """The store's name in the state health record."""
        if health is not None:
            health.watch(self.name)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
        self._conn: sqlite3.Connection | None = None
        self.unsaved: dict[str, Checkpoint] = {}
        """Checkpoints the disk refused, newest per shard, until a write takes them."""
        self._retry: asyncio.Task[None] | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            sqlite_file(self.path)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # A checkpoint lost to a power cut means re-reading a batch, never losing one.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(SCHEMA)
            self._conn = conn
        return self._conn

    async def load(self) -> dict[str, ShardState]:
        def read() -> dict[str, ShardState]:
            rows = self._db().execute(
                "SELECT shard, position, subsequence, parents FROM checkpoints "
                "WHERE reader = ? AND stream = ?",
                (self.reader, self.stream),
            )
            return {
                shard: ShardState(Checkpoint(position, int(sub)), tuple(json.loads(parents)))
                for shard, position, sub, parents in rows
            }

        result: dict[str, ShardState] = await self._run(read)
        for shard, checkpoint in self.unsaved.items():  # newer than what the file holds
            known = result.get(shard)
            result[shard] = ShardState(checkpoint, known.parents if known else ())
        return result

    async def create(self, initial: dict[str, ShardState]) -> None:
        def write() -> None:
            now = time.time()
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR IGNORE INTO checkpoints "
                    "(reader, stream, shard, position, subsequence, parents, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            self.reader,
                            self.stream,
                            shard,
                            state.checkpoint.position,
                            state.checkpoint.subsequence,
                            json.dumps(list(state.parents)),
                            now,
                        )
                        for shard, state in initial.items()
                    ],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        if initial:
            try:
                await self._run(write)
            except (sqlite3.Error, OSError) as exc:
                if self.health is not None:
                    self.health.failed(self.name, self.path, exc)
                raise

    async def save(self, shard: str, checkpoint: Checkpoint) -> None:
        """Write a checkpoint (with any the disk refused before). A refused write is kept and
        retried, reported to the state health record, and never stops the reader."""
        self.unsaved[shard] = checkpoint
        await self._flush()

    async def _flush(self) -> bool:
        pending = dict(self.unsaved)
        if not pending:
            return True
        now = time.time()

        def write() -> None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO checkpoints (reader, stream, shard, position, subsequence, "
                    "updated) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (reader, stream, shard) DO "
                    "UPDATE SET position = excluded.position, subsequence = excluded.subsequence, "
                    "updated = excluded.updated",
                    [
                        (self.reader, self.stream, s, c.position, c.subsequence, now)
                        for s, c in pending.items()
                    ],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

        try:
            await self._run(write)
        except (sqlite3.Error, OSError) as exc:
            if self.health is not None:
                self.health.failed(self.name, self.path, exc)
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._retry_loop(), name=f"{self.name}:retry")
            return False
        for shard, checkpoint in pending.items():
            if self.unsaved.get(shard) == checkpoint:
                del self.unsaved[shard]
        if self.health is not None and not self.unsaved:
            self.health.ok(self.name)
        return True

    async def _retry_loop(self) -> None:
        while self.unsaved:
            await asyncio.sleep(RETRY_EVERY)
            await self._flush()

    async def forget(self, shards: list[str]) -> None:
        def write() -> None:
            self._db().executemany(
                "DELETE FROM checkpoints WHERE reader = ? AND stream = ? AND shard = ?",
                [(self.reader, self.stream, s) for s in shards],
            )

        if shards:
            try:
                await self._run(write)
            except (sqlite3.Error, OSError) as exc:  # kept; the next start forgets them
                if self.health is not None:
                    self.health.failed(self.name, self.path, exc)

    async def stream_created(self, created: float) -> bool:
        def check() -> bool:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT created FROM streams WHERE reader = ? AND stream = ?",
                    (self.reader, self.stream),
                ).fetchone()
                stale = row is not None and abs(float(row[0]) - created) > 0.001
                if stale:
                    db.execute(
                        "DELETE FROM checkpoints WHERE reader = ? AND stream = ?",
                        (self.reader, self.stream),
                    )
                if row is None or stale:
                    db.execute(
                        "INSERT INTO streams (reader, stream, created) VALUES (?, ?, ?) "
                        "ON CONFLICT (reader, stream) DO UPDATE SET created = excluded.created",
                        (self.reader, self.stream, created),
                    )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return stale

        result: bool = await self._run(check)
        return result

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
        if not await self._flush():
            log.error(
                "checkpoints not written (the disk refused them); these shards will be read "
                "again from their last written checkpoint",
                store=self.name,
                shards=sorted(self.unsaved),
            )

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(shut)
        self._executor.shutdown(wait=True)


# --- where shards start ---------------------------------------------------------------------


def starting_points(
    shards: list[Any],
    known: dict[str, ShardState],
    *,
    initial_position: str,
) -> dict[str, ShardState]:
    """Starting checkpoints for the shards (`ShardInfo`, parents first) the store does not know.

    A shard whose parent we have tracked starts at TRIM_HORIZON (after its parents), so nothing
    written between the reshard and its first read is missed. Otherwise the configured position
    applies, except that under LATEST a closed shard has nothing new to give and starts ended
    (the "lease frontier": its open descendants start at LATEST).
    """
    new: dict[str, ShardState] = {}
    for shard in shards:
        if shard.id in known:
            continue
        if any(p in known for p in shard.parents):
            position = TRIM_HORIZON
        elif initial_position == LATEST and shard.closed:
            position = SHARD_END
        else:
            position = initial_position
        new[shard.id] = ShardState(Checkpoint(position), tuple(shard.parents))
    return new


def iterator_args(
    checkpoint: Checkpoint,
    *,
    shard: str,
    at_timestamp: Any = None,
    start_sequence_numbers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """GetShardIterator arguments that resume right after `checkpoint`."""
    position = checkpoint.position
    if checkpoint.is_sequence:
        if checkpoint.subsequence:  # part of an aggregated record is left: read it again
            return {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": position}
        return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": position}
    if position == AT_TIMESTAMP:
        return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": at_timestamp}
    if position == AT_SEQUENCE_NUMBER:
        sequence = (start_sequence_numbers or {}).get(shard)
        if sequence is not None:
            return {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": sequence}
        return {"ShardIteratorType": TRIM_HORIZON}
    if position == LATEST:
        return {"ShardIteratorType": LATEST}
    return {"ShardIteratorType": TRIM_HORIZON}
