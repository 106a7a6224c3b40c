"""Property tests: any valid event round-trips; any byte string decodes or raises only EventError."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.serde import EventCodec, EventError, SchemaStore, validate_request

from .conftest import SCHEMAS
from .strategies import errors, requests, results

STORE = SchemaStore.load(SCHEMAS)
CODECS = {
    "request": EventCodec(STORE, "inference_request"),
    "result": EventCodec(STORE, "inference_result"),
    "error": EventCodec(STORE, "inference_error"),
}
PUBLIC = {name: EventCodec(STORE, c.chain, fast_path=False, validator=c.validator) for name, c in CODECS.items()}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(requests())
def test_requests_round_trip(datum: dict[str, Any]) -> None:
    validate_request(datum)  # the strategy makes valid events only
    data = CODECS["request"].encode(datum)
    assert CODECS["request"].decode(data) == datum
    assert PUBLIC["request"].encode(datum) == data


@FAST
@given(requests(with_tenant=False))
def test_v1_requests_read_with_v2(datum: dict[str, Any]) -> None:
    data = EventCodec(STORE, "inference_request", writer_version=1).encode(datum)
    assert CODECS["request"].decode(data) == {**datum, "tenant": None}


@FAST
@given(results())
def test_results_round_trip(datum: dict[str, Any]) -> None:
    data = CODECS["result"].encode(datum)
    assert CODECS["result"].decode(data) == datum
    assert PUBLIC["result"].decode(data) == datum


@FAST
@given(errors())
def test_errors_round_trip(datum: dict[str, Any]) -> None:
    assert CODECS["error"].decode(CODECS["error"].encode(datum)) == datum


def _decode_only_typed(name: str, data: bytes) -> None:
    for codec in (CODECS[name], PUBLIC[name]):
        with contextlib.suppress(EventError):  # anything else fails the test
            codec.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CODECS)), st.binary(max_size=200))
def test_random_bytes_raise_only_event_errors(name: str, data: bytes) -> None:
    _decode_only_typed(name, data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CODECS)), st.binary(max_size=200))
def test_random_bodies_behind_a_valid_header_raise_only_event_errors(name: str, body: bytes) -> None:
    header = b"\xc3\x01" + CODECS[name].writer_schema.fingerprint
    _decode_only_typed(name, header + body)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(CODECS)))
    strategy = {"request": requests(), "result": results(), "error": errors()}[name]
    data = bytearray(CODECS[name].encode(draw(strategy)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 8))]
    return name, bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_events_raise_only_event_errors(case: tuple[str, bytes]) -> None:
    _decode_only_typed(*case)
