"""The diff engine and flapping detection, as pure functions."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from daemon.reconcile.flapping import FlapTracker
from daemon.resources.diff import Change, Entries, Required, canonical, diff, equal, top_level


class TestNormalisation:
    def test_policy_json_text_equals_the_same_policy_as_a_table(self):
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "arn:q"},
                {"Effect": "Deny", "Action": "sqs:*", "Resource": ["arn:q"]},
            ],
        }
        rewritten = json.dumps(
            {
                "Statement": [
                    {"Resource": ["arn:q"], "Action": "sqs:*", "Effect": "Deny"},
                    {"Action": "sqs:SendMessage", "Resource": ["arn:q"], "Effect": "Allow"},
                ],
                "Version": "2012-10-17",
            },
            indent=4,
        )
        assert equal(policy, rewritten)

    def test_a_real_difference_in_a_policy_is_seen(self):
        assert not equal({"Action": ["sqs:SendMessage"]}, {"Action": ["sqs:SendMessage", "x"]})
        assert not equal({"Effect": "Allow"}, {"Effect": "Deny"})

    def test_numbers_compare_by_value(self):
        assert equal(1, 1.0) and equal(threshold := 2.0, 2) and threshold == 2
        assert not equal(1, "1")

    def test_arrays_are_compared_as_sets(self):
        assert equal(["b", "a", "a"], ["a", "b"])

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=3), children, max_size=3)
            ),
            max_leaves=10,
        )
    )
    def test_canonical_is_idempotent_and_survives_json(self, value: object):
        once = canonical(value)
        assert canonical(once) == once
        assert canonical(json.loads(json.dumps(value))) == once


class TestDiff:
    def test_only_declared_keys_are_compared(self):
        expected = {"visibility_timeout": 60}
        actual = {"visibility_timeout": 60, "delay": 5, "message_retention": 345600}
        assert diff(expected, actual) == []

    def test_entries_compare_declared_entries_and_ignore_extra_ones(self):
        expected = {"tags": Entries({"team": "edge", "managed-by": "awsd"})}
        actual = {"tags": {"team": "core", "cost-center": "42", "managed-by": "awsd"}}
        assert diff(expected, actual) == [Change("tags.team", "edge", "core")]

    def test_a_missing_required_entry_is_one_change(self):
        expected = {"subscriptions": Entries({"sqs:arn:q": Required({"raw_delivery": True})})}
        assert diff(expected, {"subscriptions": {}}) == [
            Change("subscriptions[sqs:arn:q]", {"raw_delivery": True}, None)
        ]
        present = {"subscriptions": {"sqs:arn:q": {"raw_delivery": False, "x": 1}}}
        assert diff(expected, present) == [
            Change("subscriptions[sqs:arn:q].raw_delivery", True, False)
        ]

    def test_ignore_paths_skip_an_attribute_or_a_whole_subtree(self):
        expected = {"delay": 5, "tags": Entries({"a": "1", "b": "2"})}
        actual = {"delay": 0, "tags": {"a": "x", "b": "y"}}
        assert [c.path for c in diff(expected, actual, ignore=["tags.a"])] == ["delay", "tags.b"]
        assert diff(expected, actual, ignore=["tags", "delay"]) == []

    def test_a_resource_absent_on_the_aws_side_differs_everywhere(self):
        assert [c.path for c in diff({"a": 1, "b": 2}, None)] == ["a", "b"]

    def test_top_level_of_paths(self):
        assert top_level("subscriptions[sqs:x].raw_delivery") == "subscriptions"
        assert top_level("tags.team") == "tags"
        assert top_level("delay") == "delay"


class TestFlapping:
    def test_the_same_fix_n_times_within_the_window_is_contested(self):
        flaps = FlapTracker(threshold=3, window=100.0)
        assert flaps.record("queue.a", "fix", ("delay",), now=0.0) is None
        assert flaps.record("queue.a", "fix", ("delay",), now=10.0) is None
        contest = flaps.record("queue.a", "fix", ("delay",), now=20.0)
        assert contest is not None and contest.fixes == 3 and contest.paths == ("delay",)
        assert flaps.contested("queue.a", now=21.0) == contest
        assert [c.resource for c in flaps.active(now=21.0)] == ["queue.a"]

    def test_fixes_spread_beyond_the_window_or_different_fixes_are_not_flapping(self):
        flaps = FlapTracker(threshold=2, window=10.0)
        assert flaps.record("queue.a", "fix", (), now=0.0) is None
        assert flaps.record("queue.a", "fix", (), now=11.0) is None  # the first one expired
        assert flaps.record("queue.a", "other", (), now=12.0) is None
        assert flaps.record("queue.b", "fix", (), now=13.0) is None

    def test_a_contest_ends_when_in_sync_or_after_the_window(self):
        flaps = FlapTracker(threshold=2, window=10.0)
        flaps.record("queue.a", "fix", (), now=0.0)
        assert flaps.record("queue.a", "fix", (), now=1.0) is not None
        assert flaps.contested("queue.a", now=10.9) is not None
        assert flaps.contested("queue.a", now=11.0) is None
        flaps.record("queue.a", "fix", (), now=20.0)
        assert flaps.record("queue.a", "fix", (), now=21.0) is not None
        flaps.clear("queue.a")
        assert flaps.contested("queue.a", now=22.0) is None
