"""The reconciler: keeps the declared resources (`daemon/resources/`) as declared.

- `context.py` — one plan-or-apply session (clients, account, call limits, throttling);
- `plan.py` — what would change, attribute by attribute; `apply.py` — make it so, in order;
- `render.py` — the plan as text and JSON; `flapping.py` — contested resources;
- `passes.py` — one pass of the worker (detect or enforce, report drift); `results.py` its
  outcome; `loop.py` — the worker's schedule and the startup pass;
- `iam.py` — what the reconciler needs from IAM, per declared kind.
"""
