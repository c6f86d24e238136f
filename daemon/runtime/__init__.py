"""The daemon's lifecycle: what runs the workers, without knowing which kinds exist.

- `app.py` — `Daemon`: startup, reloads, the watchdog, shutdown; it is handed the worker
  catalog (`daemon.workers.CATALOG`) by the command line;
- `supervisor.py` — runs worker specs with restarts, backoff, health and a bounded stop;
- `health.py` — the loopback HTTP server (/healthz, /readyz, /status and added routes);
- `notify.py` — systemd's notify protocol (READY, RELOADING, STOPPING, STATUS, WATCHDOG);
- `process.py` — the process itself: its title, the pid file and the run files the commands
  find it by, task dumps, memory settling.
"""
