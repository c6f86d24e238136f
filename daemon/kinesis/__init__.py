"""The Kinesis capability, one concept per module; the worker is `daemon/workers/kinesis_reader.py`.

- `shards.py` — shard listing (paginated ListShards), hash ranges, parent/child lineage;
- `deagg.py` — the KPL aggregated-record format (decode, and encode for producers and tests);
- `records.py` — a fetched Kinesis record turned into handler `Record`s;
- `checkpoints.py` — the checkpoint store interface, its SQLite and DynamoDB implementations;
- `leasing.py` — the fleet: shard leases taken, renewed, balanced and stolen the KCL way;
- `consumer.py` — one shard: paced fetching into a bounded buffer, processing, checkpoints;
- `archive.py` — the Firehose-like S3 archive (a buffering handler);
- `producer.py` — partition keys and `kinesis` outbox messages; the sender is
  `daemon/outbox/senders/kinesis.py`;
- `demo.py` — the `make run` demo producer (a custom worker).
"""
