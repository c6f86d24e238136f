"""The KPL aggregated-record format: many user records packed into one Kinesis record.

Layout: the magic bytes F3 89 9A C2, a protobuf `AggregatedRecord`, then the MD5 of the protobuf
bytes. `AggregatedRecord` = 1: repeated string partition_key_table, 2: repeated string
explicit_hash_key_table, 3: repeated Record records; `Record` = 1: uint64 partition_key_index,
2: uint64 explicit_hash_key_index (optional), 3: bytes data, 4: repeated Tag tags (ignored).

Why it is written here: the maintained options either stopped in 2022 (aws-kinesis-agg) or pull in
the protobuf runtime (several MB on a Pi) for two small messages. A record that does not parse —
wrong magic, bad checksum, malformed protobuf — is handed over as the plain record it then is,
the way the Kinesis Client Library does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST = 16


@dataclass(frozen=True, slots=True)
class SubRecord:
    """One user record from an aggregated record."""

    partition_key: str
    explicit_hash_key: str | None
    data: bytes


class _Malformed(Exception):
    pass


def is_aggregated(data: bytes) -> bool:
    return len(data) > len(MAGIC) + _DIGEST and data.startswith(MAGIC)


def deaggregate(data: bytes) -> list[SubRecord] | None:
    """The user records of an aggregated record, or None when `data` is not one."""
    if not is_aggregated(data):
        return None
    body, digest = data[len(MAGIC) : -_DIGEST], data[-_DIGEST:]
    if hashlib.md5(body).digest() != digest:
        return None
    try:
        return _aggregated(body)
    except (_Malformed, IndexError, UnicodeDecodeError, ValueError):
        return None


def aggregate(records: Iterable[tuple[str, bytes] | tuple[str, bytes, str | None]]) -> bytes:
    """Pack `(partition_key, data[, explicit_hash_key])` records into one aggregated record."""
    keys: dict[str, int] = {}
    hashes: dict[str, int] = {}
    encoded: list[bytes] = []
    for entry in records:
        pk, data = entry[0], entry[1]
        ehk = entry[2] if len(entry) > 2 else None
        record = _field_varint(1, keys.setdefault(pk, len(keys)))
        if ehk is not None:
            record += _field_varint(2, hashes.setdefault(ehk, len(hashes)))
        record += _field_bytes(3, data)
        encoded.append(record)
    body = b"".join(_field_bytes(1, k.encode()) for k in keys)
    body += b"".join(_field_bytes(2, h.encode()) for h in hashes)
    body += b"".join(_field_bytes(3, r) for r in encoded)
    return MAGIC + body + hashlib.md5(body).digest()


# --- protobuf, the little of it this format needs -------------------------------------------


def _aggregated(body: bytes) -> list[SubRecord]:
    keys: list[str] = []
    hashes: list[str] = []
    raw: list[tuple[int, int | None, bytes]] = []
    for field, value in _fields(body):
        if field == 1 and isinstance(value, bytes):
            keys.append(value.decode())
        elif field == 2 and isinstance(value, bytes):
            hashes.append(value.decode())
        elif field == 3 and isinstance(value, bytes):
            raw.append(_record(value))
    return [
        SubRecord(keys[pk], hashes[eh] if eh is not None else None, data) for pk, eh, data in raw
    ]


def _record(body: bytes) -> tuple[int, int | None, bytes]:
    pk: int | None = None
    eh: int | None = None
    data: bytes | None = None
    for field, value in _fields(body):
        if field == 1 and isinstance(value, int):
            pk = value
        elif field == 2 and isinstance(value, int):
            eh = value
        elif field == 3 and isinstance(value, bytes):
            data = value
    if pk is None or data is None:
        raise _Malformed("record without partition key index or data")
    return pk, eh, data


def _fields(buf: bytes) -> Iterable[tuple[int, int | bytes]]:
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise _Malformed("length past the end")
            yield field, buf[pos : pos + size]
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    if pos != end:
        raise _Malformed("truncated field")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Malformed("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(field: int, value: int) -> bytes:
    return _encode_varint(field << 3) + _encode_varint(value)


def _field_bytes(field: int, value: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(value)) + value
