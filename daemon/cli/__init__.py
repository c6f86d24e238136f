"""The `awsd` command line: one module per group of subcommands, one helper module they share.

- `main.py` — the parser (the static list of command modules) and `main()`;
- `common.py` — config arguments, loading, the exit-code conventions, running a coroutine,
  finding the running daemon of a config;
- `run.py` (run, check-config, schema), `control.py` (status, reload, stop, dump-tasks),
  `publish.py`, `outbox.py`, `probe.py`, `cloudwatch.py`, `resources.py` (plan, apply,
  iam-policy) — each registers its subcommands;
- `entry.py` — the console script, which keeps the garbage collector off while modules load.

This package init imports nothing, so the entry point can switch the collector off first. No
command module imports another; heavy modules (aioboto3, aiohttp) load inside the commands that
need them.
"""
