"""Parts of the SQS poller (`daemon/workers/sqs_poller.py`): message decoding, the visibility
heartbeat and batched acks."""
