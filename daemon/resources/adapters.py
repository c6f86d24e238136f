"""The table of resource adapters, by kind."""

from __future__ import annotations

from daemon.config.resources import ResourceKind
from daemon.resources.alarms import AlarmAdapter
from daemon.resources.base import Adapter
from daemon.resources.buckets import BucketAdapter
from daemon.resources.log_groups import LogGroupAdapter
from daemon.resources.queues import QueueAdapter
from daemon.resources.streams import StreamAdapter
from daemon.resources.tables import TableAdapter
from daemon.resources.topics import TopicAdapter

ADAPTERS: dict[ResourceKind, Adapter] = {
    adapter.kind: adapter
    for adapter in (
        TopicAdapter(),
        QueueAdapter(),
        StreamAdapter(),
        BucketAdapter(),
        LogGroupAdapter(),
        AlarmAdapter(),
        TableAdapter(),
    )
}
