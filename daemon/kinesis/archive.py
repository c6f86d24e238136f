"""The Firehose-like S3 archive: records buffered per shard, written as one object per batch.

Objects go to `prefix/YYYY/MM/DD/HH/<stream>-<shard>-<first sequence>.<jsonl|txt>[.gz]`, the date
path in UTC from the first record's arrival time in the stream (not from the time of writing),
so re-reading the same records after a crash names the same object again. It is a
`BufferingHandler`: the reader checkpoints a record only after the object holding it was
written, so a daemon that dies with a partial buffer loses nothing (the records are read again).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from datetime import UTC, datetime
from typing import Any

from daemon.config.kinesis import ArchiveConfig
from daemon.handlers.base import BufferingHandler, Record


class _Buffer:
    __slots__ = ("chunks", "first", "size", "started")

    def __init__(self, started: float, first: Record) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.started = started
        self.first = first


class S3Archive(BufferingHandler):
    """Writes buffered records of each shard to S3 (see the module docstring)."""

    name = "archive"

    def __init__(
        self,
        cfg: ArchiveConfig,
        clients: Any,
        *,
        metrics: Any,
        reader: str,
        bucket: str | None = None,
        log: Any = None,
    ) -> None:
        self.cfg = cfg
        self.bucket = bucket or cfg.bucket
        """The bucket's AWS name (`cfg.bucket` may be a declared resource's logical name)."""
        self.clients = clients
        self.log = log
        self._buffers: dict[str, _Buffer] = {}
        self._objects = metrics.counter(
            "awsd_kinesis_archive_objects_total", "Objects written by S3 archives", ("reader",)
        ).labels(reader=reader)
        self._bytes = metrics.counter(
            "awsd_kinesis_archive_bytes_total",
            "Bytes written by S3 archives (after compression)",
            ("reader",),
        ).labels(reader=reader)
        self._failures = metrics.counter(
            "awsd_kinesis_archive_failures_total", "Failed S3 archive writes", ("reader",)
        ).labels(reader=reader)
        self.last_key: str | None = None
        self._encryption: dict[str, str] = {}
        if cfg.encryption != "none":
            self._encryption["ServerSideEncryption"] = cfg.encryption
            if cfg.encryption == "aws:kms" and cfg.kms_key_id:
                self._encryption["SSEKMSKeyId"] = cfg.kms_key_id

    async def accept(self, record: Record, scope: str) -> None:
        line = self._line(record)
        buffer = self._buffers.get(scope)
        if buffer is None:
            buffer = self._buffers[scope] = _Buffer(asyncio.get_running_loop().time(), record)
        buffer.chunks.append(line)
        buffer.size += len(line)

    def ready(self, scope: str, now: float) -> bool:
        buffer = self._buffers.get(scope)
        if buffer is None:
            return False
        return (
            buffer.size >= self.cfg.buffer_bytes or now - buffer.started >= self.cfg.buffer_seconds
        )

    def due_in(self, scope: str, now: float) -> float | None:
        buffer = self._buffers.get(scope)
        if buffer is None:
            return None
        return max(0.0, buffer.started + self.cfg.buffer_seconds - now)

    def pending(self, scope: str) -> int:
        buffer = self._buffers.get(scope)
        return len(buffer.chunks) if buffer else 0

    async def flush(self, scope: str) -> None:
        buffer = self._buffers.get(scope)
        if buffer is None:
            return
        body = b"".join(buffer.chunks)
        if self.cfg.gzip:
            body = await asyncio.to_thread(gzip.compress, body, 6)
        key = self.object_key(buffer.first)
        s3 = await self.clients.client("s3")
        try:
            await s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/x-ndjson" if self.cfg.format == "jsonl" else "text/plain",
                **({"ContentEncoding": "gzip"} if self.cfg.gzip else {}),
                **self._encryption,
            )
        except Exception:
            self._failures.inc()
            raise
        # Only now is the buffer done (sources never accept into a scope while flushing it).
        if self._buffers.get(scope) is buffer:
            del self._buffers[scope]
        self._objects.inc()
        self._bytes.inc(len(body))
        self.last_key = key
        if self.log is not None:
            self.log.info(
                "records archived",
                bucket=self.bucket,
                key=key,
                records=len(buffer.chunks),
                bytes=len(body),
            )

    def discard(self, scope: str) -> None:
        self._buffers.pop(scope, None)

    def object_key(self, first: Record) -> str:
        arrival = first.meta.get("arrival")
        when = datetime.fromisoformat(arrival) if isinstance(arrival, str) else datetime.now(UTC)
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        stream = str(first.meta.get("stream", "stream")).rsplit("/", 1)[-1]
        shard = first.meta.get("shard", "shard")
        sequence = first.meta.get("sequence", first.id)
        extension = ".jsonl" if self.cfg.format == "jsonl" else ".txt"
        return f"{self.cfg.prefix}{when:%Y/%m/%d/%H}/{stream}-{shard}-{sequence}{extension}" + (
            ".gz" if self.cfg.gzip else ""
        )

    def _line(self, record: Record) -> bytes:
        if self.cfg.format == "lines":
            return record.body + b"\n"
        entry: dict[str, Any] = {
            "sequence": record.meta.get("sequence", record.id),
            "partition_key": record.meta.get("partition_key"),
            "arrival": record.meta.get("arrival"),
        }
        if "subsequence" in record.meta:
            entry["subsequence"] = record.meta["subsequence"]
        try:
            entry["data"] = record.text if record.text is not None else record.body.decode()
        except UnicodeDecodeError:
            entry["data_base64"] = base64.b64encode(record.body).decode()
        return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
