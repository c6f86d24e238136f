"""What the outbox says about a message is true: dropped is never "delivered", an id it never
had is "unknown", a full state directory is its own refusal, reported and recovered from."""

from __future__ import annotations

import stat
from pathlib import Path

from daemon.core.events import StateStoreFailing, StateStoreRecovered
from daemon.outbox import Message, OutboxDiskFull, OutboxDropped
from daemon.outbox.outcomes import DropReason, Fate, OutcomeRecord
from tests.support.messaging import receive_bodies
from tests.support.observe import wait_until
from tests.support.outbox import make_outbox


async def test_drop_oldest_reports_dropped_with_its_reason_across_a_restart(tmp_path: Path):
    path = str(tmp_path / "o.sqlite3")
    outbox = make_outbox(path, max_messages=5, full_policy="drop_oldest")
    dropped = outbox.events.subscribe(OutboxDropped, name="test")
    ids = [await outbox.put(Message("sqs", "q", {"body": f"m{i}"}, origin="me")) for i in range(8)]
    for item_id in ids[:3]:
        status = await outbox.status(item_id)
        assert status.fate is Fate.DROPPED and status.reason == DropReason.OUTBOX_FULL
        assert status.to_json()["status"] == "dropped"
    assert [(await outbox.status(i)).fate for i in ids[3:]] == [Fate.ACCEPTED] * 5
    for never in (-1, 0, 123456789, 1 << 70):
        assert (await outbox.status(never)).fate is Fate.UNKNOWN
    event = await dropped.get()
    assert isinstance(event, OutboxDropped) and event.item_id == ids[0] and event.origin == "me"
    await outbox.close()
    again = make_outbox(path, max_messages=5, full_policy="drop_oldest")
    assert (await again.status(ids[0])).fate is Fate.DROPPED  # from the file's record
    assert (await again.status(ids[-1])).fate is Fate.ACCEPTED
    await again.close()


async def test_delivered_keeps_its_message_id_in_the_file_after_a_restart(
    tmp_path: Path, boto, delivery
):
    boto("sqs").create_queue(QueueName="truth-delivered")
    path = str(tmp_path / "o.sqlite3")
    outbox = make_outbox(path)
    item_id = await outbox.put(Message("sqs", "truth-delivered", {"body": "x"}))
    await delivery(outbox)
    await wait_until(lambda: outbox.count == 0)
    assert receive_bodies(boto, "truth-delivered", 1) == ["x"]
    again = make_outbox(path)
    status = await again.status(item_id)
    assert status.fate is Fate.DELIVERED and status.message_id and status.at
    await again.close()


async def test_intake_below_the_free_space_threshold_is_refused_reported_and_reopens(
    tmp_path: Path,
):
    path = str(tmp_path / "state" / "o.sqlite3")
    outbox = make_outbox(path, min_free_bytes=1024**4)  # more than this disk has
    events = outbox.events.subscribe(StateStoreFailing, StateStoreRecovered, name="test")
    try:
        await outbox.put(Message("sqs", "q", {"body": "x"}))
        raise AssertionError("accepted on a full disk")
    except OutboxDiskFull as exc:
        assert str(exc).startswith("state directory full: ") and "bytes free in" in str(exc)
        assert exc.free is not None
    assert "state directory full" in outbox.health.degraded()["outbox"]
    assert outbox.describe()["intake"].startswith("refused: state directory full")
    failing = await events.get()
    assert isinstance(failing, StateStoreFailing) and failing.full and failing.store == "outbox"
    assert "state directory full" in failing.text()
    outbox.configure(outbox.cfg.model_copy(update={"min_free_bytes": 0}))
    assert await outbox.repair(0.0)
    assert outbox.health.degraded() == {} and outbox.describe()["intake"] == "open"
    assert isinstance(await events.get(), StateStoreRecovered)
    assert await outbox.put(Message("sqs", "q", {"body": "x"})) == 1
    for name in ("o.sqlite3", "o.sqlite3-wal", "o.sqlite3-shm", "o.sqlite3.reserve"):
        assert stat.S_IMODE((tmp_path / "state" / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    await outbox.close()


def test_the_outcome_record_is_bounded_and_forgets_the_oldest():
    from daemon.outbox.outcomes import MessageStatus

    record = OutcomeRecord(3)
    for i in range(1, 6):
        record.add(MessageStatus(i, Fate.DELIVERED))
    assert len(record) == 3 and record.get(1) is None and record.get(5) is not None
    record.resize(1)
    assert len(record) == 1 and record.get(5) is not None
