"""The probe engine: checks, conditions, results, alert state machines, and their delivery.

- `engine.py` — the worker's engine: schedule, record results, history, metrics, alerts;
- `delivery.py` — alert notices through the grouping window and the outbox, and back;
- `scheduler.py` — start-to-start schedule with deterministic phases and a hard deadline;
- `prober.py` — one check of any kind: `http.py`, `tcp.py`, `dns.py` (with `tls.py`);
- `conditions.py` — what a result must satisfy; `result.py` — the result and its reasons;
- `alerts.py` — the alert state machine; `state.py` — its persistence; `history.py` — uptime;
- `maintenance.py` — windows with time zones; `storm.py` — grouping and the connectivity guard;
- `notify.py` — alert messages (SNS, SMS); `metrics.py` — the probe metrics.
"""
