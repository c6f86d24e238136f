"""The daemon's own telemetry shipped to AWS: process-lifetime services that outlive reloads.

- `export.py` — flushes the metrics registry as CloudWatch statistic sets (`cloudwatch.py`) and
  Embedded Metric Format lines (`emf.py`);
- `log_shipper.py` — ships log events to CloudWatch Logs by the PutLogEvents rules
  (`log_batch.py`);
- `grants.py` — what both need from IAM.
"""
