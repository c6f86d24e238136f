"""Declared AWS resources: one adapter module per kind, and the machinery shared by all kinds.

- `base.py` — the `Adapter` interface and the `Context` every AWS call goes through;
- `naming.py` — physical names and ARNs; `adapters.py` — the table of adapters by kind;
- `topics.py`, `queues.py`, `streams.py`, `buckets.py`, `log_groups.py`, `alarms.py`,
  `tables.py` — one module per kind;
- `diff.py` — normalise and compare; `plan.py` — what would change; `apply.py` — make it so;
- `render.py` — the Terraform-like text and the JSON of a plan; `commands.py` — `awsd plan`,
  `awsd apply`, `awsd iam-policy`; `iam.py` — what the reconciler needs from IAM.

Adding a kind: its config model in `daemon/config/resources.py` (and a field on
`ResourcesConfig`), one adapter module here, and one line in `ADAPTERS` (`adapters.py`).

This package init imports nothing: `awsd check-config` and the CLI stay fast, and the AWS
libraries load only for the commands and workers that call AWS.
"""
