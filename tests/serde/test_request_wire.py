"""The request's direct reader changes nothing but speed: on every record, valid or not, a codec that has it
gives what fastavro alone gives (the same datum and end, or the same error code and message), for both
schema versions it knows; it is used only for those versions and only on the fast path."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.serde import DecodeError, EventCodec, SchemaStore
from pipeline.serde.request_wire import REQUEST_V1_FINGERPRINT, REQUEST_V2_FINGERPRINT, StandAside, direct_reader
from pipeline.serde.result_wire import long_bytes
from pipeline.serde.writers import Reading

from .conftest import SCHEMAS
from .strategies import requests

STORE = SchemaStore.load(SCHEMAS)
CODEC = EventCodec(STORE, "inference_request")
V1_WRITER = EventCodec(STORE, "inference_request", writer_version=1)
HEADER = 10  # single-object framing: C3 01 and the 8-byte fingerprint
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _reading(data: bytes) -> Reading:
    return CODEC._frame(data)[0]


def _outcome(reading: Reading, data: bytes) -> tuple[Any, ...]:
    try:
        datum, end = reading.read(data, HEADER)
    except DecodeError as exc:
        return ("error", exc.code, str(exc))
    return ("read", datum, end)


def _same_as_fastavro(data: bytes) -> tuple[Any, ...]:
    """The codec's reading of ``data`` with and without the direct reader: they must agree."""
    reading = _reading(data)
    assert reading.direct is not None
    got = _outcome(reading, data)
    assert got == _outcome(dataclasses.replace(reading, direct=None), data)
    return got


def test_fingerprints_are_the_shipped_schemas() -> None:
    assert STORE.get("inference_request", 1).fingerprint == REQUEST_V1_FINGERPRINT
    assert STORE.get("inference_request", 2).fingerprint == REQUEST_V2_FINGERPRINT


def test_used_only_for_the_request_versions_it_knows_and_only_on_the_fast_path() -> None:
    datum = {**_request(), "tenant": None}
    assert _reading(CODEC.encode(datum)).direct is not None
    assert _reading(V1_WRITER.encode(datum)).direct is not None
    public = EventCodec(STORE, "inference_request", fast_path=False)
    assert public._frame(CODEC.encode(datum))[0].direct is None
    v1_reader = EventCodec(STORE, "inference_request", reader_version=1, writer_version=1)
    assert v1_reader._frame(V1_WRITER.encode(datum))[0].direct is None
    assert direct_reader(REQUEST_V2_FINGERPRINT, REQUEST_V1_FINGERPRINT) is None
    result = EventCodec(STORE, "inference_result")
    assert result._pair({}, None, result.reader_schema.fingerprint, "result", None).direct is None


@FAST
@given(requests())
def test_v2_records_read_as_fastavro_reads_them(datum: dict[str, Any]) -> None:
    data = CODEC.encode(datum)
    assert _same_as_fastavro(data) == ("read", datum, len(data))


@FAST
@given(requests(with_tenant=False))
def test_v1_records_read_into_v2_as_fastavro_resolves_them(datum: dict[str, Any]) -> None:
    data = V1_WRITER.encode(datum)
    assert _same_as_fastavro(data) == ("read", {**datum, "tenant": None}, len(data))


def test_every_truncation_and_every_byte_value_at_every_position() -> None:
    datum = {**_request(), "attributes": {"k": "v"}, "correlation_id": "c", "tenant": "t"}
    data = CODEC.encode(datum)
    for cut in range(HEADER, len(data)):
        assert _same_as_fastavro(data[:cut])[0] == "error"
    for pos in range(HEADER, len(data)):
        for value in (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x7F, 0x80, 0x81, 0xFE, 0xFF):
            _same_as_fastavro(data[:pos] + bytes([value]) + data[pos + 1 :])


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    writer = draw(st.sampled_from([CODEC, V1_WRITER]))
    data = bytearray(writer.encode(draw(requests(with_tenant=writer is CODEC))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(HEADER, max(HEADER, len(data) - 1)))
        if op == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_records_read_as_fastavro_reads_them(data: bytes) -> None:
    if len(data) > HEADER:
        _same_as_fastavro(data)


def _string(text: str) -> bytes:
    raw = text.encode()
    return long_bytes(len(raw)) + raw


def _body(*, tensors: bytes, attributes: bytes, created_at: int = 1_764_000_000_000) -> bytes:
    head = _string("6f1c8b7e-3f7a-4a51-9b0e-0c5d3c1e2a44") + long_bytes(created_at) + _string("src")
    model = _string("tiny") + b"\x00" + b"\x02"  # version null; priority NORMAL
    return head + model + b"\x02" + tensors + attributes + b"\x00\x00"  # tensors; correlation, tenant null


def _tensor(dims: list[int], data: bytes) -> bytes:
    shape = (long_bytes(len(dims)) + b"".join(long_bytes(d) for d in dims) + b"\x00") if dims else b"\x00"
    return _string("x") + _string("float32") + shape + long_bytes(len(data)) + data


def test_blocks_with_sizes_long_varints_and_negative_longs() -> None:
    """What the codec's own writer never writes but another writer may: array and map blocks with a
    negative count and a byte size, several blocks, counts and lengths of several bytes, negative longs."""
    one = _tensor([2], b"\x00" * 8)
    tensors = long_bytes(-1) + long_bytes(len(one)) + one + long_bytes(1) + _tensor([1], b"\x00" * 4) + b"\x00"
    entries = [(f"key{i}", "v" * 200) for i in range(70)]
    pairs = b"".join(_string(k) + _string(v) for k, v in entries)
    attributes = long_bytes(-70) + long_bytes(len(pairs)) + pairs + b"\x00"
    data = b"\xc3\x01" + REQUEST_V2_FINGERPRINT + _body(tensors=tensors, attributes=attributes, created_at=-5)
    kind, datum, end = _same_as_fastavro(data)
    assert (kind, end) == ("read", len(data))
    assert [t["shape"] for t in datum["payload"]["tensors"]] == [[2], [1]]
    assert datum["attributes"] == dict(entries) and datum["created_at"] == -5


def test_a_varint_past_nine_bytes_is_left_to_fastavro() -> None:
    ten = b"\xff" * 9 + b"\x01"
    data = b"\xc3\x01" + REQUEST_V2_FINGERPRINT + _body(tensors=b"\x00", attributes=b"\x00")
    stamp = data.index(long_bytes(1_764_000_000_000))
    data = data[:stamp] + ten + data[stamp + len(long_bytes(1_764_000_000_000)) :]
    reading = _reading(data)
    assert reading.direct is not None
    with pytest.raises(StandAside):
        reading.direct(data, HEADER)
    _same_as_fastavro(data)


def _request() -> dict[str, Any]:
    return {
        "event_id": "6f1c8b7e-3f7a-4a51-9b0e-0c5d3c1e2a44",
        "created_at": 1_764_000_000_000,
        "source": "test",
        "model": {"name": "tiny", "version": None},
        "priority": "NORMAL",
        "payload": {"tensors": [{"name": "x", "dtype": "float32", "shape": [2], "data": b"\x00" * 8}]},
        "attributes": {},
        "correlation_id": None,
    }
