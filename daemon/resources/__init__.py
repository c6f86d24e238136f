"""Declared AWS resources: one module per kind, owning everything about that kind.

`kind.py` says what a kind is (config model, naming rule, ARN, references, checks, IAM actions,
the adapter that reads and writes it) and holds what kinds share; `diff.py` normalises and
compares. The kinds are `topics.py`, `queues.py`, `streams.py`, `buckets.py`, `log_groups.py`,
`alarms.py`, `tables.py`, `functions.py`, `distributions.py`, `file_systems.py`; beside them,
how AWS returns and takes what a kind holds in parts (`bucket_settings.py`,
`distribution_config.py`, `function_parts.py`, `function_code.py`, `file_system_parts.py`),
listed as the fields of `ResourcesConfig` (`daemon/config/
resources.py`), from which every table by kind is derived.

Adding a kind: one module here and one field there (plus tests and docs). The reconciler that
plans and applies them is `daemon/reconcile/`.
"""
