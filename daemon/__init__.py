"""awsd: an event-driven asyncio daemon for AWS at the edge (EC2 instances and Raspberry Pis)."""

__version__ = "0.1.0"
