"""Kinesis building blocks without AWS: KPL de-aggregation, record units, starting positions,
lease balancing, producer validation and partition keys."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from daemon.config.partition import PartitionKeyConfig
from daemon.core.leases import Lease, LeaseTable
from daemon.core.logs import get_logger
from daemon.core.shards import MAX_HASH_KEY, ShardInfo, hash_key, parents_first
from daemon.kinesis.checkpoints import Checkpoint, ShardState, iterator_args, starting_points
from daemon.kinesis.deagg import aggregate, deaggregate
from daemon.kinesis.leasing import CHECKPOINT, ShardLeases
from daemon.kinesis.records import units
from daemon.outbox import InvalidMessage
from daemon.outbox.producer import kinesis_message, partition_key
from daemon.outbox.senders.kinesis import KinesisSender

# Made by the reference implementation (aws-kinesis-agg 1.2.3's RecordAggregator) from
# ("k1", b"hello"), ("k2", b"world", explicit hash key "12345"), ("k1", b"again").
REFERENCE = bytes.fromhex(
    "f3899ac20a026b310a026b32120531323334351a0908001a0568656c6c6f1a0b080110001a05776f726c64"
    "1a0908001a05616761696eb8ee61ecb7e32e068e16bc26ebf2ee95"
)

WHOLE = ShardInfo("shardId-0", (), 0, MAX_HASH_KEY, "1", None)


def test_deaggregation_reads_what_the_reference_kpl_library_writes():
    subs = deaggregate(REFERENCE)
    assert subs is not None
    assert [(s.partition_key, s.explicit_hash_key, s.data) for s in subs] == [
        ("k1", None, b"hello"),
        ("k2", "12345", b"world"),
        ("k1", None, b"again"),
    ]
    assert aggregate([("k1", b"hello"), ("k2", b"world", "12345"), ("k1", b"again")]) == REFERENCE


def test_not_aggregated_or_corrupt_records_stay_plain():
    assert deaggregate(b"plain json {}") is None
    corrupt = bytearray(REFERENCE)
    corrupt[10] ^= 0xFF  # checksum no longer matches
    assert deaggregate(bytes(corrupt)) is None
    raw = {"Data": bytes(corrupt), "SequenceNumber": "7", "PartitionKey": "p"}
    got, dropped = units(raw, stream="s", shard=WHOLE, decoder="bytes")
    assert [(u.record.id, u.last, u.record.body) for u in got] == [("7", True, bytes(corrupt))]
    assert dropped == 0


def test_sub_records_outside_the_shard_hash_range_are_dropped_and_counted():
    low = ShardInfo("shardId-low", (), 0, 2**127 - 1, "1", None)
    keys = [k for k in (f"key{i}" for i in range(40))]
    inside = [k for k in keys if low.owns(hash_key(k))][:2]
    outside = [k for k in keys if not low.owns(hash_key(k))][:2]
    data = aggregate([(inside[0], b"a"), (outside[0], b"b"), (inside[1], b"c"), (outside[1], b"d")])
    raw = {
        "Data": data,
        "SequenceNumber": "42",
        "PartitionKey": inside[0],
        "ApproximateArrivalTimestamp": datetime(2024, 5, 1, tzinfo=UTC),
    }
    got, dropped = units(raw, stream="s", shard=low, decoder="text")
    assert dropped == 2
    assert [(u.record.id, u.record.text, u.sub, u.last) for u in got] == [
        ("42:0", "a", 0, False),
        ("42:2", "c", 2, True),  # the last kept sub-record completes the Kinesis record
    ]
    assert got[0].record.meta["arrival"] == "2024-05-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("decoder", "body", "kind", "data"),
    [
        ("json", b'{"t": 21.5}', "json", {"t": 21.5}),
        ("json", b"not json", "text", None),
        ("json", b"\xff\xfe", "bytes", None),
        ("text", b'{"t": 1}', "text", None),
        ("bytes", b"abc", "bytes", None),
    ],
)
def test_decoders_never_raise(decoder, body, kind, data):
    raw = {"Data": body, "SequenceNumber": "1", "PartitionKey": "p"}
    (unit,), _ = units(raw, stream="s", shard=WHOLE, decoder=decoder)
    assert unit.record.kind == kind and unit.record.data == data


def _shard(sid: str, parents: tuple[str, ...] = (), closed: bool = False) -> ShardInfo:
    return ShardInfo(sid, parents, 0, MAX_HASH_KEY, "1", "9" if closed else None)


def test_children_of_tracked_parents_start_at_trim_horizon_after_them():
    shards = parents_first(
        [_shard("c1", ("p",)), _shard("p", closed=True), _shard("c2", ("p",)), _shard("o")]
    )
    assert [s.id for s in shards].index("p") < [s.id for s in shards].index("c1")
    known = {"p": ShardState(Checkpoint("55"))}
    new = starting_points(shards, known, initial_position="LATEST")
    assert new["c1"].checkpoint.position == "TRIM_HORIZON" and new["c1"].parents == ("p",)
    assert new["o"].checkpoint.position == "LATEST"
    # Nothing tracked yet, LATEST: a closed shard has nothing new, its open child starts LATEST.
    fresh = starting_points(shards, {}, initial_position="LATEST")
    assert fresh["p"].checkpoint.ended and fresh["c1"].checkpoint.position == "LATEST"
    assert starting_points(shards, {}, initial_position="TRIM_HORIZON")["c2"].checkpoint == (
        Checkpoint("TRIM_HORIZON")
    )


def test_resuming_after_a_checkpoint():
    assert iterator_args(Checkpoint("17"), shard="s") == {
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "StartingSequenceNumber": "17",
    }
    # Part of an aggregated record done: read it again (its done sub-records are skipped).
    assert iterator_args(Checkpoint("17", 3), shard="s")["ShardIteratorType"] == (
        "AT_SEQUENCE_NUMBER"
    )
    at = datetime(2024, 1, 1, tzinfo=UTC)
    assert iterator_args(Checkpoint("AT_TIMESTAMP"), shard="s", at_timestamp=at) == {
        "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": at,
    }
    assert iterator_args(
        Checkpoint("AT_SEQUENCE_NUMBER"), shard="s", start_sequence_numbers={"s": "9"}
    ) == {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": "9"}
    assert iterator_args(Checkpoint("AT_SEQUENCE_NUMBER"), shard="x")["ShardIteratorType"] == (
        "TRIM_HORIZON"
    )


class TestBalancing:
    """The lease taker's arithmetic (KCL's): target ceil(leases / workers), expired first, at most
    one steal per round."""

    def leases(self, owners: list[str | None], finished: int = 0) -> ShardLeases:
        coordinator = ShardLeases(
            LeaseTable(None, "t", "me"),  # type: ignore[arg-type] - the table is not called
            failover_time=10,
            max_leases=100,
            log=get_logger(),
        )
        view = [Lease(f"s{i}", owner, 1) for i, owner in enumerate(owners)]
        view += [Lease(f"done{i}", "other", 1, {CHECKPOINT: "SHARD_END"}) for i in range(finished)]
        coordinator.view = {lease.key: lease for lease in view}
        coordinator.tracker.observe(view, now=0.0)
        coordinator.held = {lease.key: lease for lease in view if lease.owner == "me"}
        return coordinator

    def test_alone_takes_every_free_lease(self):
        plan = self.leases([None] * 4).plan(now=1.0)
        assert len(plan) == 4

    def test_a_newcomer_steals_one_lease_per_round_from_the_most_loaded(self):
        coordinator = self.leases(["a", "a", "a", "a"])
        plan = coordinator.plan(now=1.0)
        assert coordinator.target == 2 and coordinator.workers == 2
        assert len(plan) == 1 and plan[0].owner == "a"

    def test_balanced_workers_take_nothing(self):
        assert self.leases(["a", "a", "me", "me"]).plan(now=1.0) == []
        # 5 leases, 2 workers: target 3; the other has 3 and I need only 1 -> no steal.
        assert self.leases(["a", "a", "a", "me", "me"]).plan(now=1.0) == []

    def test_expired_leases_are_taken_before_stealing(self):
        coordinator = self.leases(["dead", "dead", "a", "a"])
        # `a` renews (its counters change); `dead` is silent for failover_time.
        later = [
            Lease(k, lease.owner, lease.counter + (lease.owner == "a"))
            for k, lease in coordinator.view.items()
        ]
        coordinator.view = {lease.key: lease for lease in later}
        coordinator.tracker.observe(later, now=11.0)
        plan = coordinator.plan(now=11.0)
        assert sorted(lease.owner or "" for lease in plan) == ["dead", "dead"]

    def test_finished_shards_do_not_count(self):
        coordinator = self.leases(["a", "a"], finished=6)
        plan = coordinator.plan(now=1.0)
        assert coordinator.target == 1 and len(plan) == 1


def test_producer_messages_validate_sizes_and_keys():
    message = kinesis_message(
        "clicks",
        {"device": {"id": "pi-7"}, "t": 1},
        key=PartitionKeyConfig(source="field", field="device.id"),
    )
    assert message.body["partition_key"] == "pi-7"
    assert base64.b64decode(message.body["data"]) == b'{"device":{"id":"pi-7"},"t":1}'
    assert (
        KinesisSender.validate("clicks", message.body) == len(b'{"device":{"id":"pi-7"},"t":1}') + 4
    )
    with pytest.raises(InvalidMessage, match="limit is 1048576"):
        KinesisSender.validate(
            "s", {"data": base64.b64encode(b"x" * (1024 * 1024)).decode(), "partition_key": "k"}
        )
    with pytest.raises(InvalidMessage, match="1 to 256 characters"):
        KinesisSender.validate("s", {"data": "", "partition_key": "k" * 257})
    with pytest.raises(InvalidMessage, match="not valid base64"):
        KinesisSender.validate("s", {"data": "***", "partition_key": "k"})
    with pytest.raises(InvalidMessage, match="below 2\\*\\*128"):
        KinesisSender.validate(
            "s", {"data": "", "partition_key": "k", "explicit_hash_key": str(2**128)}
        )


def test_partition_keys_fixed_field_or_random():
    assert partition_key(PartitionKeyConfig(source="fixed", value="name")) == "name"
    field = PartitionKeyConfig(source="field", field="sensor")
    assert partition_key(field, {"sensor": 12}) == "12"
    missing = partition_key(field, {"other": 1})
    assert len(missing) == 32 and missing != partition_key(field, {"other": 1})
    with pytest.raises(ValueError, match="needs a value"):
        PartitionKeyConfig(source="fixed")


def test_leases_the_table_says_are_ours_but_we_do_not_hold_are_taken_again():
    coordinator = TestBalancing().leases(["a", "a", "me", "me"])
    coordinator.held.pop("s2")  # given up after renewals failed for failover_time
    plan = coordinator.plan(now=1.0)
    assert [lease.key for lease in plan] == ["s2"]
