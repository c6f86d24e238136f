"""Core services every capability uses: AWS clients, names, IAM, logs, metrics, events, leases.

- `aws.py` — the one way to build AWS clients (`AwsClients`); `aws_lean.py` its memory savings;
  `local_aws.py` the embedded moto endpoint; `identity.py` host and instance names;
- `targets.py` — the one resolver from a logical name to an AWS name to an ARN;
- `iam.py` — grants and the least-privilege policy built from them;
- `logs.py` — structured logging; `metrics/` — the registry and Prometheus text;
- `events.py` — the in-process event bus and the events workers share;
- `leases.py` — DynamoDB leases with counters; `leadership.py` — one leader per fleet;
- `shards.py` — Kinesis shard listing and hash ranges (the reader and the producer);
- `programs.py` — running a user's program safely; `http.py` — what HTTP routes share.
"""
