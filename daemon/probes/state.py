"""The probe state store: alert states and hourly uptime counts in SQLite, across restarts.

Why: an alert that was announced must not be announced again after a restart (or a reload that
restarts the probe worker), an open alert must still resolve with a notification, and uptime
ratios should not restart from zero. Writes happen on alert transitions, on outbox
confirmations, every minute for uptime counts, and at stop: never per check. All SQLite work
runs on one dedicated thread, as in the outbox, so the event loop never waits on the disk.

A write the disk refuses (full, failing) never stops the probes: it is reported to the state
health record (/readyz degraded, /status, metrics, an event) and the save answers False; the
states stay in memory and the next periodic save writes them (uptime hours the caller keeps
dirty), so recovery needs no operator. The file is 0600 in a 0700 directory.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from daemon.base.files import sqlite_file
from daemon.core.storage import StateHealth
from daemon.probes.alerts import AlertState

NAME = "probes"
"""The store's name in the state health record."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (
    endpoint TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uptime (
    endpoint TEXT NOT NULL,
    hour INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    total INTEGER NOT NULL,
    PRIMARY KEY (endpoint, hour)
);
"""


class StateStore:
    def __init__(self, path: str, *, health: StateHealth | None = None) -> None:
        self.path = path
        self.health = health
        if health is not None:
            health.watch(NAME)
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-state")

    async def open(self) -> None:
        try:
            await self._run(self._open)
        except (sqlite3.Error, OSError) as exc:
            if self.health is not None:
                self.health.failed(NAME, self.path, exc)
            raise

    def _open(self) -> None:
        sqlite_file(self.path)
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        db.commit()
        self._db = db

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            await self._run(close)
        finally:
            self._executor.shutdown(wait=True)

    async def load_alerts(self) -> dict[str, AlertState]:
        def load() -> dict[str, AlertState]:
            rows = self._conn().execute("SELECT endpoint, data FROM alert_state").fetchall()
            return {name: AlertState.from_json(json.loads(data)) for name, data in rows}

        states: dict[str, AlertState] = await self._run(load)
        return states

    async def save_alerts(self, states: list[AlertState]) -> bool:
        """Write alert states; False when the disk refused them (reported, kept by the caller)."""
        rows = [(s.endpoint, json.dumps(s.to_json(), separators=(",", ":"))) for s in states]
        if not rows:
            return True

        def save() -> None:
            with self._conn() as db:
                db.executemany(
                    "INSERT INTO alert_state (endpoint, data) VALUES (?, ?) "
                    "ON CONFLICT(endpoint) DO UPDATE SET data = excluded.data",
                    rows,
                )

        return await self._write(save)

    async def delete_alerts(self, endpoints: list[str]) -> bool:
        if not endpoints:
            return True

        def delete() -> None:
            with self._conn() as db:
                db.executemany(
                    "DELETE FROM alert_state WHERE endpoint = ?", [(e,) for e in endpoints]
                )
                db.executemany("DELETE FROM uptime WHERE endpoint = ?", [(e,) for e in endpoints])

        return await self._write(delete)

    async def load_uptime(self, since_hour: int) -> list[tuple[str, int, int, int]]:
        def load() -> list[tuple[str, int, int, int]]:
            with self._conn() as db:
                db.execute("DELETE FROM uptime WHERE hour < ?", (since_hour,))
                return db.execute("SELECT endpoint, hour, ok, total FROM uptime").fetchall()

        rows: list[tuple[str, int, int, int]] = await self._run(load)
        return rows

    async def save_uptime(self, rows: list[tuple[str, int, int, int]]) -> bool:
        """Write hourly counts; False when the disk refused them (reported)."""
        if not rows:
            return True

        def save() -> None:
            with self._conn() as db:
                db.executemany(
                    "INSERT INTO uptime (endpoint, hour, ok, total) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(endpoint, hour) DO UPDATE SET ok = excluded.ok, "
                    "total = excluded.total",
                    rows,
                )

        return await self._write(save)

    async def _write(self, fn: Callable[[], None]) -> bool:
        try:
            await self._run(fn)
        except (sqlite3.Error, OSError) as exc:
            if self.health is None:
                raise
            self.health.failed(NAME, self.path, exc)
            return False
        if self.health is not None:
            self.health.ok(NAME)
        return True

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("probe state store is closed")
        return self._db

    async def _run(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
