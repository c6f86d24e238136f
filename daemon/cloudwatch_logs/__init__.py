"""Shipping the daemon's log events to CloudWatch Logs.

`batch` holds the PutLogEvents rules as pure functions (sizes, counts, time span, order, age);
`shipper` is the process-lifetime service that buffers events from the logs pipeline and sends
the batches.
"""
