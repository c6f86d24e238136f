"""The SQS poller: long polls, bounded in-flight work, acks, FIFO groups, graceful stop.

- `poller.py` — the worker's engine (receive loop, slots, stop); `dispatch.py` — from a
  received message to a handled one (tasks, FIFO groups, failure policy); `queue.py` — finding
  the queue; `receipts.py` — the visibility heartbeat and batched acks; `decode.py` — what a
  message carries (SNS envelope, raw, S3 events, JSON, text, bytes); `metrics.py`.
"""
