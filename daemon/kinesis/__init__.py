"""The Kinesis reader, one concept per module; its worker kind: `workers/kinesis_reader.py`.

- `reader.py` — the worker's engine: names, handlers, the checkpoint store, the loop;
- `scheduler.py` — which shards run when: lineage order, leases, restarts of crashed consumers;
- `consumer.py` — one shard: paced fetching into a bounded buffer, processing, checkpoints;
- `records.py` — a fetched Kinesis record turned into handler `Record`s; `deagg.py` — the KPL
  aggregated-record format (decode, and encode for producers and tests);
- `checkpoints.py` — the checkpoint store interface, its SQLite and DynamoDB implementations;
- `leasing.py` — the fleet: shard leases taken, renewed, balanced and stolen the KCL way;
- `archive.py` — the Firehose-like S3 archive (a buffering handler);
- `demo.py` — the `make run` demo producer (a custom worker).

Shard listing and hash ranges are `daemon/core/shards.py` (the producer uses them too); records
are produced through the outbox (`daemon/outbox/producer.py`, sent by
`daemon/outbox/senders/kinesis.py`).
"""
