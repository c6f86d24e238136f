"""The SNS publisher: readings, events and local ingest into the durable outbox.

- `publisher.py` — the worker's engine: readings on a start-to-start schedule, events from the
  bus, all put into the outbox;
- `publishing.py` — what a publish request is (`PublishRequest`), and the loopback ingest
  (`POST /publish`) that `awsd publish` talks to.
"""
