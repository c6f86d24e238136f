"""The state stores on a disk that refuses writes: the Kinesis checkpoints and the probe state
keep what they could not write, report it (degraded, metric, event) and write it by themselves
once the disk takes writes again. SQLite's own limit (`PRAGMA max_page_count`) makes the file
full for real, so every write fails the way a full disk makes it fail (SQLITE_FULL)."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from daemon.core.events import EventBus, StateStoreFailing, StateStoreRecovered
from daemon.core.metrics import Registry
from daemon.core.storage import StateHealth
from daemon.kinesis.checkpoints import Checkpoint, SqliteCheckpoints
from daemon.probes.alerts import AlertState
from daemon.probes.state import StateStore


def health() -> tuple[StateHealth, Registry, EventBus]:
    metrics = Registry()
    events = EventBus(metrics)
    return StateHealth(metrics, events), metrics, events


def fill(conn: sqlite3.Connection) -> None:
    """No page may be added to the file from now on."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")


def failing_gauge(metrics: Registry, store: str) -> float:
    family = metrics.get("awsd_state_store_failing")
    assert family is not None
    return dict(family.items())[(store,)].value  # type: ignore[union-attr]


async def test_checkpoints_the_disk_refuses_are_kept_reported_and_written_later(tmp_path: Path):
    state, metrics, events = health()
    seen = events.subscribe(StateStoreFailing, StateStoreRecovered, name="test")
    path = str(tmp_path / "state" / "cp.sqlite3")
    store = SqliteCheckpoints(path, reader="r", stream="s", health=state)
    await store.save("shard-0", Checkpoint("1"))
    fill(store._db())
    for i in range(1, 300):  # new rows need new pages, which the file may not have
        await store.save(f"shard-{i:04d}-{'x' * 40}", Checkpoint(str(i)))
    assert "kinesis-checkpoints:r" in state.degraded()
    assert failing_gauge(metrics, "kinesis-checkpoints:r") == 1
    assert isinstance(await seen.get(), StateStoreFailing)
    known = await store.load()
    assert store.unsaved and all(known[s].checkpoint == c for s, c in store.unsaved.items())
    store._db().execute("PRAGMA max_page_count=1073741823")  # space is back
    await store.save("shard-0", Checkpoint("2"))
    assert not store.unsaved and state.degraded() == {}
    assert isinstance(await seen.get(), StateStoreRecovered)
    await store.close()
    again = SqliteCheckpoints(path, reader="r", stream="s")
    assert len(await again.load()) == 300
    await again.close()
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600


async def test_probe_state_the_disk_refuses_is_reported_and_saved_by_the_next_save(
    tmp_path: Path,
):
    state, metrics, _ = health()
    store = StateStore(str(tmp_path / "probes.sqlite3"), health=state)
    await store.open()
    assert await store.save_alerts([AlertState("a")])
    assert store._db is not None
    fill(store._db)
    many = [AlertState(f"endpoint-{i}-{'y' * 60}") for i in range(300)]
    assert not await store.save_alerts(many)
    assert not await store.save_uptime([(f"e{i}", 1, 1, 1) for i in range(500)])
    assert state.degraded()["probes"].startswith("state directory full")
    assert failing_gauge(metrics, "probes") == 1
    store._db.execute("PRAGMA max_page_count=1073741823")
    assert await store.save_alerts(many)
    assert state.degraded() == {} and failing_gauge(metrics, "probes") == 0
    assert len(await store.load_alerts()) == 301
    await store.close()
