"""Hostile input: every cap fails a record with its own code, names the field, and costs no more than the
record's bytes; hostile block counts and varints end as typed errors at once."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.serde import (
    DecodeError,
    ErrorCode,
    EventCodec,
    EventError,
    SchemaStore,
    Stage,
    ValidationError,
    build_request,
    validate_request,
)
from pipeline.serde.limits import DEFAULT_LIMITS, Limits, check_extent, show_bytes, shown
from pipeline.serde.validation import check_tensor, validator_for
from tests.stages.fuzz_corpus import zigzag

SMALL = Limits(max_tensor_elements=1000, max_text_chars=50, max_items=20)


def string(text: str) -> bytes:
    raw = text.encode()
    return zigzag(len(raw)) + raw


def _code(datum: dict[str, Any], limits: Limits = SMALL) -> tuple[ErrorCode, str]:
    with pytest.raises(ValidationError) as info:
        validate_request(datum, limits=limits)
    return info.value.code, info.value.message


def _tensor(shape: list[int], data: bytes = b"", name: str = "x") -> dict[str, Any]:
    return {"name": name, "dtype": "float32", "shape": shape, "data": data}


def _with_tensors(*tensors: dict[str, Any]) -> dict[str, Any]:
    return build_request(model="tiny", text="x") | {"payload": {"tensors": list(tensors)}}


def test_a_shape_past_max_tensor_elements_names_its_field_and_count() -> None:
    code, message = _code(_with_tensors(_tensor([65536, 65536, 1])), DEFAULT_LIMITS)
    assert code is ErrorCode.TENSOR_TOO_LARGE
    assert message == (
        "payload.tensors[0].shape: 3 dims with 4,294,967,296 elements, max_tensor_elements is 16,777,216"
    )


@pytest.mark.parametrize(
    "shape",
    [
        [2**62, 2**62, 2**62],  # the product overflows 64 bits
        [2**63 - 1] * 10,
        [0, 2**62, 2**62],  # empty, but numpy's size arithmetic overflows on it
        [3] * 15 + [2**40],
    ],
)
def test_absurd_shapes_are_caught_without_big_numbers(shape: list[int]) -> None:
    started = time.perf_counter()
    code, message = _code(_with_tensors(_tensor(shape)))
    assert code is ErrorCode.TENSOR_TOO_LARGE
    assert message.startswith("payload.tensors[0].shape:") and "max_tensor_elements is 1,000" in message
    assert len(message) < 200 and time.perf_counter() - started < 0.05


def test_the_element_count_stops_at_the_cap() -> None:
    """10,000 dims of 2**40: the exact product has 120,000 digits (it could not even be printed)."""
    limits = Limits(max_items=20_000)
    started = time.perf_counter()
    with pytest.raises(ValidationError) as info:
        check_extent("t", [2**40] * 10_000, limits, None)
    assert info.value.code is ErrorCode.TENSOR_TOO_LARGE
    assert "more than 18,446,744,073,709,551,616 elements" in info.value.message
    assert time.perf_counter() - started < 0.05
    assert check_extent("t", [0, 5, 7], limits, None) == 0
    assert check_extent("t", [4, 5], limits, None) == 20


def test_a_long_text_and_long_strings_anywhere() -> None:
    code, message = _code(build_request(model="tiny", text="é" * 51))
    assert (code, message) == (ErrorCode.TEXT_TOO_LONG, "payload.text: 51 chars, max_text_chars is 50")
    long = "y" * 51
    for change, field in [
        ({"source": long}, "source"),
        ({"correlation_id": long}, "correlation_id"),
        ({"tenant": long}, "tenant"),
        ({"model": {"name": long, "version": None}}, "model.name"),
        ({"model": {"name": "m", "version": long}}, "model.version"),
        ({"attributes": {"k": long}}, "attributes['k']"),
        ({"attributes": {long: "v"}}, "attributes key"),
    ]:
        code, message = _code(build_request(model="m", text="ok") | change)
        assert code is ErrorCode.TEXT_TOO_LONG and message.startswith(field), (field, message)
    code, message = _code(_with_tensors(_tensor([1], b"\0" * 4, name=long)))
    assert (code, message.split(":")[0]) == (ErrorCode.TEXT_TOO_LONG, "payload.tensors[0].name")


def test_items_of_all_arrays_and_maps_count_together() -> None:
    attrs = {f"k{i}": "v" for i in range(21)}
    code, message = _code(build_request(model="m", text="ok") | {"attributes": attrs})
    assert (code, message) == (ErrorCode.TOO_MANY_ITEMS, "attributes: 21 entries, max_items is 20")
    code, message = _code(_with_tensors(*[_tensor([1], b"\0" * 4, name=f"t{i}") for i in range(21)]))
    assert (code, message) == (ErrorCode.TOO_MANY_ITEMS, "payload.tensors: 21 tensors, max_items is 20")
    code, message = _code(_with_tensors(_tensor([1] * 25, b"\0" * 4)))
    assert code is ErrorCode.TOO_MANY_ITEMS and message.startswith("payload.tensors[0].shape: 25 dims (26 with")
    # within the cap each, past it together: 10 attributes, 2 tensors, 9 dims
    datum = _with_tensors(_tensor([1] * 4, b"\0" * 4, name="a"), _tensor([1] * 5, b"\0" * 4, name="b"))
    validate_request(datum | {"attributes": {f"k{i}": "v" for i in range(9)}}, limits=SMALL)
    code, message = _code(datum | {"attributes": {f"k{i}": "v" for i in range(10)}})
    assert code is ErrorCode.TOO_MANY_ITEMS
    assert message == "payload.tensors[1].shape: 5 dims (21 with the record's other arrays and maps), max_items is 20"


def test_defaults_let_real_requests_through() -> None:
    validate_request(build_request(model="m", text="a" * 100_000))
    image = np.zeros((3, 224, 224), np.float32)
    validate_request(build_request(model="m", tensors={"pixels": image}, attributes={"a": "b"}))


def test_messages_show_what_the_record_gave_cut_short() -> None:
    code, message = _code(build_request(model="m", text="ok") | {"event_id": "z" * 10_000}, DEFAULT_LIMITS)
    assert code is ErrorCode.INVALID_UUID and "10,000 chars" in message and len(message) < 200
    code, message = _code(_with_tensors({**_tensor([1], b"\0" * 4), "dtype": "q" * 5000}), DEFAULT_LIMITS)
    assert code is ErrorCode.BAD_DTYPE and len(message) < 400
    assert shown([1] * 100).endswith("... (100 items)]")
    assert shown(2**200) == "an integer of 201 bits"
    assert show_bytes(bytes(range(40)), 4) == "40 bytes: 00 01 02 03 ..."
    assert show_bytes(b"\xc3\x01") == "2 bytes: c3 01"


def test_a_tensor_checked_alone_gets_the_same_caps() -> None:
    with pytest.raises(ValidationError) as info:
        check_tensor(_tensor([2**62, 4]))
    assert info.value.code is ErrorCode.TENSOR_TOO_LARGE and info.value.message.startswith("tensor 'x'.shape")


def test_settings_carry_the_limits_into_the_codec(tmp_path: Any) -> None:
    settings = Settings(max_tensor_elements=10, max_text_chars=5, max_items=3, model_cache=tmp_path)
    codec = EventCodec.from_settings(settings, "request")
    assert codec.limits == Limits(10, 5, 3)
    with pytest.raises(ValidationError) as info:
        codec.decode(codec.encode(build_request(model="m", text="123456")))
    assert info.value.code is ErrorCode.TEXT_TOO_LONG and info.value.stage is Stage.VALIDATE
    assert validator_for("request", DEFAULT_LIMITS) is validate_request
    assert validator_for("result", Limits(1, 1, 1)) is None


# ------------------------------------------------------------------ on the bytes


@pytest.fixture(scope="module")
def codec(store: SchemaStore) -> EventCodec:
    return EventCodec(store, "inference_request", validator=validate_request)


def _prefix(codec: EventCodec, event_id: str) -> bytes:
    """The header and the fields before the tensor array, written by hand: event id, created_at, source,
    model (name, null version), priority NORMAL, the tensor branch of the payload union."""
    return (
        codec._so_header
        + string(event_id)
        + zigzag(1)
        + string("s")
        + string("tiny")
        + zigzag(0)
        + zigzag(1)
        + zigzag(1)
    )


def test_the_hand_made_prefix_is_what_the_codec_writes(codec: EventCodec) -> None:
    request = build_request(model="tiny", tensors={"x": np.zeros(2, np.float32)}, source="s", created_at=1)
    assert codec.encode(request).startswith(_prefix(codec, request["event_id"]))


def _tail() -> bytes:
    return zigzag(0) + zigzag(0) + zigzag(0) + zigzag(0)  # end of tensors, no attributes, two nulls


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("a count of 2**62 tensors", zigzag(2**62)),
        ("a negative count with a huge block size", zigzag(-(2**62)) + zigzag(2**62)),
        ("the most negative count", zigzag(-(2**63))),
        ("a shape of 2**62 dims", zigzag(1) + string("x") + string("float32") + zigzag(2**62)),
        ("bytes of 2**62", zigzag(1) + string("x") + string("float32") + zigzag(0) + zigzag(2**62)),
        ("bytes of negative length", zigzag(1) + string("x") + string("float32") + zigzag(0) + zigzag(-5) + b"x" * 9),
        ("a varint that never ends", b"\xff" * 5000),
    ],
)
def test_hostile_counts_end_at_once(codec: EventCodec, what: str, body: bytes) -> None:
    data = _prefix(codec, "00000000-0000-4000-8000-000000000000") + body
    started = time.perf_counter()
    with pytest.raises(EventError) as info:
        codec.decode(data)
    assert time.perf_counter() - started < 0.05, what
    assert info.value.code in {ErrorCode.TRUNCATED, ErrorCode.INVALID_DATUM}, what
    assert data[:16].hex(" ") in info.value.message


def _many_tensors(codec: EventCodec, n: int) -> bytes:
    """A record of ``n`` minimal tensors (four bytes each: an empty name, dtype and data, no dims)."""
    one = string("") + string("") + zigzag(0) + string("")
    return _prefix(codec, "00000000-0000-4000-8000-000000000000") + zigzag(n) + one * n + _tail()


def test_items_are_counted_on_the_bytes_before_decoding(codec: EventCodec) -> None:
    """200,000 tensors in 800 kB took fastavro half a second to build; counted first, the record fails at
    once with the count of the array that passed the cap."""
    data = _many_tensors(codec, 200_000)
    started = time.perf_counter()
    with pytest.raises(ValidationError) as info:
        codec.decode(data)
    assert time.perf_counter() - started < 0.02
    assert info.value.code is ErrorCode.TOO_MANY_ITEMS
    assert info.value.message == "payload.tensors: 200,000 items, max_items is 10,000"


def test_blocks_of_a_negative_count_are_counted_too(codec: EventCodec) -> None:
    one = zigzag(5)  # one dim of 5... as a long
    shape = zigzag(-6000) + zigzag(6000) + one * 6000 + zigzag(-6000) + zigzag(6000) + one * 6000 + zigzag(0)
    data = (
        _prefix(codec, "00000000-0000-4000-8000-000000000000")
        + zigzag(1)
        + string("x")
        + string("float32")
        + shape
        + string("")
        + _tail()
    )
    with pytest.raises(ValidationError) as info:
        codec.decode(data)
    assert info.value.code is ErrorCode.TOO_MANY_ITEMS
    assert info.value.message.startswith("payload.tensors[].shape: 12,000 items (12,001 with")


def test_a_record_within_the_cap_is_decoded_as_before(codec: EventCodec) -> None:
    request = build_request(model="tiny", tensors={"x": np.zeros((50, 400), np.float32)}, attributes={"a": "b"})
    data = codec.encode(request)
    assert len(data) > DEFAULT_LIMITS.max_items  # long enough to be counted first
    assert codec.decode(data) == request | {"tenant": None}


def test_too_large_is_checked_before_anything_else(store: SchemaStore) -> None:
    small = EventCodec(store, "inference_request", max_message_bytes=100, validator=validate_request)
    with pytest.raises(DecodeError) as info:
        small.decode(b"\xff" * 101)  # no header: a decoder that looked at it first would say BAD_MAGIC
    assert info.value.code is ErrorCode.TOO_LARGE and info.value.message == "101 bytes, max_message_bytes is 100"


def test_unknown_fingerprint_is_said_plainly_with_the_bytes(codec: EventCodec) -> None:
    data = b"\xc3\x01" + bytes.fromhex("0102030405060708") + b"body"
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert info.value.code is ErrorCode.UNKNOWN_SCHEMA
    message = info.value.message
    assert message.startswith("unknown writer schema: fingerprint 01 02 03 04 05 06 07 08 is none of")
    assert "14 bytes: c3 01 01 02 03 04 05 06 07 08 62 6f 64 79" in message


@pytest.mark.parametrize(
    ("data", "code", "seen"),
    [
        (b"{json}", ErrorCode.BAD_MAGIC, "6 bytes: 7b 6a 73 6f 6e 7d"),
        (b"\xc3\x02abc", ErrorCode.BAD_MAGIC, "5 bytes: c3 02 61 62 63"),
        (b"\xc3\x01\x00", ErrorCode.TRUNCATED, "3 bytes: c3 01 00"),
        (b"\x00\x00", ErrorCode.TRUNCATED, "2 bytes: 00 00"),
    ],
)
def test_framing_errors_show_the_bytes_in_hex(codec: EventCodec, data: bytes, code: ErrorCode, seen: str) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert info.value.code is code and seen in info.value.message


def test_the_limits_are_settings_with_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_MAX_TENSOR_ELEMENTS", "1024")
    monkeypatch.setenv("PIPELINE_MAX_TEXT_CHARS", "77")
    monkeypatch.setenv("PIPELINE_MAX_ITEMS", "12")
    assert Limits.from_settings(Settings()) == Limits(1024, 77, 12)
    monkeypatch.delenv("PIPELINE_MAX_TENSOR_ELEMENTS")
    monkeypatch.delenv("PIPELINE_MAX_TEXT_CHARS")
    monkeypatch.delenv("PIPELINE_MAX_ITEMS")
    assert Limits.from_settings(Settings()) == DEFAULT_LIMITS == Limits(16_777_216, 100_000, 10_000)
