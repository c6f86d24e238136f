"""Declared AWS resources: one module per kind, owning everything about that kind.

`kind.py` says what a kind is (config model, naming rule, ARN, references, checks, IAM actions,
the adapter that reads and writes it) and holds what kinds share; `diff.py` normalises and
compares. The kinds are `topics.py`, `queues.py`, `streams.py`, `buckets.py`, `log_groups.py`,
`alarms.py`, `tables.py` (`bucket_settings.py` holds how S3 returns and takes each bucket
setting), listed as the fields of `ResourcesConfig` (`daemon/config/
resources.py`), from which every table by kind is derived.

Adding a kind: one module here and one field there (plus tests and docs). The reconciler that
plans and applies them is `daemon/reconcile/`.
"""
