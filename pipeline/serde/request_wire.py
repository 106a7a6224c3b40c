"""An ``InferenceRequest`` read straight from its Avro bytes, for both roles' hot path.

Why: fastavro's reader interprets the parsed schema for every record, a lookup and a call per field, and
both roles read every request. The layout of the versions we ship is fixed, so this reads their fields in
order, with the one-byte counts and lengths of nearly every field read in line (a call for each made a
tiny request's read a fifth slower), and takes a fifth to two fifths less time than fastavro's compiled
reader (``bench/README.md``, 12-07 afternoon).

It only ever gives what fastavro gives. It reads the writer schemas it knows (by canonical fingerprint:
v1 and v2 of the request, into v2's shape, as fastavro resolves them) and nothing else; and on anything it
does not expect (a union or enum index outside its branches, a negative or overlong length, a varint
longer than nine bytes, bad UTF-8, a record that ends early) it raises, and the codec reads the record
again with fastavro, which decides, and names what is wrong. ``tests/serde/test_request_wire.py``
compares the two on generated requests and on every truncation and many corruptions of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The Parsing Canonical Form fingerprints (CRC-64-AVRO) of schemas/inference_request/v1.avsc and v2.avsc:
# docs and logical types aside, the layouts this module reads.
REQUEST_V1_FINGERPRINT = bytes.fromhex("1e78e8c3ec845ee4")
REQUEST_V2_FINGERPRINT = bytes.fromhex("4bf477d9ac189e9e")

DirectRead = Callable[[bytes, int], tuple[dict[str, Any], int]]
"""(record bytes, where the body starts) -> (the datum, where the body ends)."""

_PRIORITY = ("LOW", "NORMAL", "HIGH")  # the enum's symbols, by index: the same in v1 and v2


class StandAside(Exception):
    """A record this reader does not vouch for."""


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint of more than one byte. Nine at most: the tenth would hold bits past 64, where
    fastavro's reader and Python's integers part ways."""
    n = shift = 0
    while True:
        if shift > 56:
            raise StandAside
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    b = data[pos]
    if b & 0x80:
        n, pos = _long(data, pos)
    else:
        n = (b >> 1) ^ -(b & 1)
        pos += 1
    end = pos + n
    if n < 0 or end > len(data):
        raise StandAside
    return data[pos:end], end


def _str(data: bytes, pos: int) -> tuple[str, int]:
    """``_bytes``, decoded. Written out again: calling ``_bytes`` from here made a request's read 7-8% slower."""
    b = data[pos]
    if b & 0x80:
        n, pos = _long(data, pos)
    else:
        n = (b >> 1) ^ -(b & 1)
        pos += 1
    end = pos + n
    if n < 0 or end > len(data):
        raise StandAside
    return data[pos:end].decode(), end


def _optional_str(data: bytes, pos: int) -> tuple[str | None, int]:
    """A ``["null", "string"]`` union."""
    b = data[pos]
    if b == 0:
        return None, pos + 1
    if b != 2:
        raise StandAside
    return _str(data, pos + 1)


def _count(data: bytes, pos: int) -> tuple[int, int]:
    """An array's or map's block count; a negative one is followed by the block's size, which is skipped."""
    b = data[pos]
    if b & 0x80:
        n, pos = _long(data, pos)
    else:
        n = (b >> 1) ^ -(b & 1)
        pos += 1
    if n < 0:
        _, pos = _long(data, pos)
        n = -n
    return n, pos


def _tensors(data: bytes, pos: int) -> tuple[list[dict[str, Any]], int]:
    tensors = []
    count, pos = _count(data, pos)
    while count:
        for _ in range(count):
            name, pos = _str(data, pos)
            dtype, pos = _str(data, pos)
            shape = []
            dims, pos = _count(data, pos)
            while dims:
                for _ in range(dims):
                    b = data[pos]
                    if b & 0x80:
                        d, pos = _long(data, pos)
                    else:
                        d = (b >> 1) ^ -(b & 1)
                        pos += 1
                    shape.append(d)
                dims, pos = _count(data, pos)
            body, pos = _bytes(data, pos)
            tensors.append({"name": name, "dtype": dtype, "shape": shape, "data": body})
        count, pos = _count(data, pos)
    return tensors, pos


def _read(data: bytes, pos: int, v2: bool = True) -> tuple[dict[str, Any], int]:
    event_id, pos = _str(data, pos)
    b = data[pos]
    if b & 0x80:
        created_at, pos = _long(data, pos)
    else:
        created_at = (b >> 1) ^ -(b & 1)
        pos += 1
    source, pos = _str(data, pos)
    name, pos = _str(data, pos)
    version, pos = _optional_str(data, pos)
    b = data[pos]
    if b > 4 or b & 1:
        raise StandAside
    priority = _PRIORITY[b >> 1]
    b = data[pos + 1]
    pos += 2
    payload: dict[str, Any]
    if b == 2:
        tensors, pos = _tensors(data, pos)
        payload = {"tensors": tensors}
    elif b == 0:
        text, pos = _str(data, pos)
        payload = {"text": text}
    else:
        raise StandAside
    attributes = {}
    count, pos = _count(data, pos)
    while count:
        for _ in range(count):
            key, pos = _str(data, pos)
            attributes[key], pos = _str(data, pos)
        count, pos = _count(data, pos)
    correlation_id, pos = _optional_str(data, pos)
    tenant = None  # v1 has no tenant: fastavro gives v2's default
    if v2:
        tenant, pos = _optional_str(data, pos)
    datum = {
        "event_id": event_id,
        "created_at": created_at,
        "source": source,
        "model": {"name": name, "version": version},
        "priority": priority,
        "payload": payload,
        "attributes": attributes,
        "correlation_id": correlation_id,
        "tenant": tenant,
    }
    return datum, pos


def _read_v1(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    return _read(data, pos, False)


def direct_reader(writer_fp: bytes, reader_fp: bytes) -> DirectRead | None:
    """The direct reader for records of ``writer_fp`` read as ``reader_fp``; None where there is none."""
    if reader_fp != REQUEST_V2_FINGERPRINT:
        return None
    return {REQUEST_V2_FINGERPRINT: _read, REQUEST_V1_FINGERPRINT: _read_v1}.get(writer_fp)
