"""Declared AWS resources: one adapter module per kind, and the machinery shared by all kinds.

- `base.py` — the `Adapter` interface and the `Context` every AWS call goes through;
- `topics.py`, `queues.py`, `streams.py`, `buckets.py`, `log_groups.py`, `alarms.py`,
  `tables.py` — one module per kind;
- `diff.py` — normalise and compare; `plan.py` — what would change; `apply.py` — make it so;
- `render.py` — the Terraform-like text and the JSON of a plan; `commands.py` — `awsd plan`,
  `awsd apply`, `awsd iam-policy`; `iam.py` — what the reconciler needs from IAM.

Adding a kind: its config model in `daemon/config/resources.py` (and a field on
`ResourcesConfig`), one adapter module here, and one line in `ADAPTERS`.
"""

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
