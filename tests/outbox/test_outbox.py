"""The durable outbox against real SQLite files and a real moto server."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.outbox import (
    InvalidMessage,
    Message,
    OutboxDelivered,
    OutboxFull,
    OutboxRejected,
)
from daemon.outbox.store import Store
from tests.conftest import ConfigFactory
from tests.support.messaging import receive_bodies
from tests.support.observe import wait_until
from tests.support.outbox import make_outbox
from tests.support.proc import Awsd
from tests.support.proxy import FaultProxy


def queue_name() -> str:
    return f"outbox-{uuid.uuid4().hex[:10]}"


async def test_messages_reach_sqs_and_leave_the_outbox(boto, delivery):
    name = queue_name()
    boto("sqs").create_queue(QueueName=name)
    outbox = make_outbox()
    delivered = outbox.events.subscribe(OutboxDelivered, name="test")
    ids = await outbox.put_many(
        [Message("sqs", name, {"body": f"m{i}"}, origin="t") for i in range(25)]
    )
    assert ids == sorted(ids) and len(set(ids)) == 25
    await delivery(outbox)
    await wait_until(lambda: outbox.count == 0)
    assert sorted(receive_bodies(boto, name, 25)) == sorted(f"m{i}" for i in range(25))
    first = await delivered.get()
    assert isinstance(first, OutboxDelivered) and first.origin == "t" and first.message_id
    assert (await outbox.status(ids[0])).fate == "delivered"


async def test_concurrent_puts_are_committed_together_and_all_kept(tmp_path: Path):
    outbox = make_outbox(str(tmp_path / "o.sqlite3"))
    ids = await asyncio.gather(
        *(outbox.put(Message("sqs", "q", {"body": str(i)})) for i in range(200))
    )
    assert len(set(ids)) == 200 and outbox.count == 200
    await outbox.close()
    store = Store(str(tmp_path / "o.sqlite3"), durability="full")
    assert store.totals()[0] == 200
    store.close()


async def test_pending_messages_survive_a_restart_and_go_first_in_order(
    tmp_path: Path, boto, delivery
):
    name = queue_name()
    boto("sqs").create_queue(QueueName=name)
    path = str(tmp_path / "o.sqlite3")
    first = make_outbox(path)
    await first.put_many([Message("sqs", name, {"body": f"old-{i}"}) for i in range(35)])
    await first.close()

    second = make_outbox(path)
    await second.open()
    assert second.count == 35 and second._targets[("sqs", name)].count == 35
    await second.put(Message("sqs", name, {"body": "new"}))
    items = await second.take(("sqs", name), 10, 1 << 20)
    assert [i.body["body"] for i in items] == [f"old-{i}" for i in range(10)]
    second.release(("sqs", name))
    await delivery(second)  # four batches: everything from before, then the new one
    await wait_until(lambda: second.count == 0)
    assert len(receive_bodies(boto, name, 36)) == 36


async def test_endpoint_outage_delays_but_loses_nothing(boto, delivery, fault_proxy: FaultProxy):
    name = queue_name()
    boto("sqs").create_queue(QueueName=name)
    fault_proxy.set_mode("refuse")
    outbox = make_outbox(retry_initial=0.1, retry_max=0.3)
    await outbox.put_many([Message("sqs", name, {"body": f"m{i}"}) for i in range(12)])
    await delivery(outbox, fault_proxy.url)
    await wait_until(lambda: any(t.failures >= 2 for t in outbox._targets.values()))
    assert outbox.count == 12
    fault_proxy.set_mode("pass")
    await wait_until(lambda: outbox.count == 0)
    assert sorted(receive_bodies(boto, name, 12)) == sorted(f"m{i}" for i in range(12))


async def test_a_missing_queue_is_retried_until_it_exists(boto, delivery):
    name = queue_name()
    outbox = make_outbox(retry_initial=0.1, retry_max=0.2)
    await outbox.put(Message("sqs", name, {"body": "early"}))
    await delivery(outbox)
    await wait_until(lambda: any(t.failures >= 1 for t in outbox._targets.values()))
    boto("sqs").create_queue(QueueName=name)
    await wait_until(lambda: outbox.count == 0)
    assert receive_bodies(boto, name, 1) == ["early"]


async def test_rejected_messages_go_to_the_dead_letter_table(boto, delivery, tmp_path: Path):
    name = queue_name()
    boto("sqs").create_queue(QueueName=name, Attributes={"MaximumMessageSize": "1024"})
    outbox = make_outbox(str(tmp_path / "o.sqlite3"))
    rejected = outbox.events.subscribe(OutboxRejected, name="test")
    # Larger than this queue accepts: fine locally, refused for good by SQS, and it fails the
    # whole batch, so the sender must isolate it without holding back the good messages.
    first = await outbox.put(Message("sqs", name, {"body": "good-1"}))
    bad = await outbox.put(Message("sqs", name, {"body": "x" * 2000}))
    good = await outbox.put(Message("sqs", name, {"body": "good-2"}))
    await delivery(outbox)
    await wait_until(lambda: outbox.count == 0)
    event = await asyncio.wait_for(rejected.get(), 5)
    assert isinstance(event, OutboxRejected) and event.item_id == bad
    assert (await outbox.status(bad)).fate == "dead" and (
        await outbox.status(good)
    ).fate == "delivered"
    assert (await outbox.status(first)).fate == "delivered"
    assert sorted(receive_bodies(boto, name, 2)) == ["good-1", "good-2"]


async def test_invalid_messages_fail_at_put_with_a_clear_reason():
    outbox = make_outbox()
    with pytest.raises(InvalidMessage, match="unknown message kind 'fax'"):
        await outbox.put(Message("fax", "x", {}))
    with pytest.raises(InvalidMessage, match="non-empty string 'body'"):
        await outbox.put(Message("sqs", "q", {"body": ""}))
    with pytest.raises(InvalidMessage, match="limit is 262144"):
        await outbox.put(Message("sqs", "q", {"body": "x" * 300_000}))
    with pytest.raises(InvalidMessage, match="needs a group_id"):
        await outbox.put(Message("sqs", "q.fifo", {"body": "x"}))
    with pytest.raises(InvalidMessage, match="at most 10 message attributes"):
        await outbox.put(
            Message("sqs", "q", {"body": "x", "attributes": {str(i): i for i in range(11)}})
        )
    assert outbox.count == 0
    await outbox.close()


async def test_full_outbox_blocks_then_refuses():
    outbox = make_outbox(max_messages=2, block_timeout=0.2)
    await outbox.put_many([Message("sqs", "q", {"body": "1"}), Message("sqs", "q", {"body": "2"})])
    with pytest.raises(OutboxFull):
        await outbox.put(Message("sqs", "q", {"body": "3"}))
    assert outbox.count == 2
    await outbox.close()


async def test_full_outbox_with_drop_oldest_counts_the_drop():
    outbox = make_outbox(max_messages=3, full_policy="drop_oldest")
    for i in range(5):
        await outbox.put(Message("sqs", "q", {"body": str(i)}))
    items = await outbox.take(("sqs", "q"), 10, 1 << 20)
    assert [i.body["body"] for i in items] == ["2", "3", "4"]
    outbox.release(("sqs", "q"))
    assert outbox._m_dropped.labels(kind="sqs").value == 2
    await outbox.close()


@pytest.mark.slow
def test_sigkill_loses_no_accepted_message(
    configs: ConfigFactory, awsd: Callable[..., Awsd], boto, fault_proxy: FaultProxy
):
    name = queue_name()
    boto("sqs").create_queue(QueueName=name)
    fault_proxy.set_mode("blackhole")  # AWS unreachable: everything waits in the outbox
    data = configs.data(
        {
            "aws": {"endpoint_url": fault_proxy.url, "read_timeout": 1.0, "connect_timeout": 1.0},
            "outbox": {"retry_initial": 0.2, "retry_max": 0.5},
            "custom": {
                "p": {
                    "entrypoint": "tests.support.workers:produce",
                    "options": {"queue": name, "count": 1000, "every": 0.002},
                }
            },
        }
    )
    path = configs.tmp_path / "awsd.toml"
    configs.rewrite(path, data)
    proc = awsd(path)
    proc.logs.wait_for("test message accepted", n=50)
    proc.signal(signal.SIGKILL)
    proc.wait(10)
    accepted = {e["n"] for e in proc.logs.matching("test message accepted")}
    assert len(accepted) >= 50

    fault_proxy.set_mode("pass")
    data["custom"]["p"]["options"]["count"] = 0  # restart without producing more
    configs.rewrite(path, data)
    again = awsd(path)
    again.logs.wait_for("outbox has messages from before; delivering them first")
    bodies = receive_bodies(boto, name, len(accepted), tries=60)
    again.stop()
    got = {int(b.removeprefix("msg-")) for b in bodies}
    assert accepted <= got, f"lost: {sorted(accepted - got)[:10]}"


def test_awsd_outbox_says_when_there_are_no_dead_letters(
    offline_configs: ConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from daemon.cli import main as cli
    from daemon.outbox.outcomes import Fate, MessageStatus
    from daemon.outbox.store import NewMessage

    path = str(offline_configs.write())
    store = Store(str(tmp_path / "state" / "outbox.sqlite3"), durability="normal")
    try:
        assert cli.main(["outbox", "-c", path, "--dead"]) == 0
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("# no dead letters in ")
        assert cli.main(["outbox", "-c", path, "--requeue-dead"]) == 0
        assert capsys.readouterr().out == "no dead letters to move\n"

        [item] = store.insert([NewMessage("sns", "t", {"message": "m"}, "test", 1)])
        dead = MessageStatus(item, Fate.DEAD, "InvalidParameter: refused")
        store.settle([dead], {}, keep_dead=100, keep_outcomes=100)
        assert cli.main(["outbox", "-c", path, "--dead"]) == 0
        out, err = capsys.readouterr()
        assert err.startswith("# 1 dead letters in ") and "InvalidParameter" in out
    finally:
        store.close()
