"""Semantic validation and the tensor helpers: each rule raises its own code, valid input passes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.serde import ErrorCode, ValidationError, build_request, has_nan, validate_request
from pipeline.serde.tensors import array_to_tensor, dtype_name, payload_arrays, tensor_payload, tensor_to_array
from pipeline.serde.validation import WIRE_DTYPES, has_nan_bytes


def _tensor_request(**tensor: Any) -> dict[str, Any]:
    base = array_to_tensor("x", np.zeros(8, dtype=np.float32))
    return build_request(model="tiny", tensors={"x": np.zeros(8, dtype=np.float32)}) | {
        "payload": {"tensors": [{**base, **tensor}]}
    }


def _code(datum: dict[str, Any]) -> ErrorCode:
    with pytest.raises(ValidationError) as info:
        validate_request(datum)
    return info.value.code


def test_valid_requests_pass() -> None:
    validate_request(build_request(model="m", text="hello"))
    validate_request(_tensor_request())
    validate_request(build_request(model="m", tensors={"s": np.array(3, dtype=np.int64)}))  # 0-d


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"event_id": "1234"}, ErrorCode.INVALID_UUID),
        ({"event_id": "0b7e4f6e2d5c4f7a9a513c1e0d2b8f10"}, ErrorCode.INVALID_UUID),  # not canonical form
        ({"payload": {"text": ""}}, ErrorCode.EMPTY_TEXT),
        ({"payload": {"text": " \n\t"}}, ErrorCode.EMPTY_TEXT),
        ({"payload": {"tensors": []}}, ErrorCode.BAD_SHAPE),
        ({"payload": {}}, ErrorCode.INVALID_DATUM),
    ],
)
def test_request_rules(change: dict[str, Any], code: ErrorCode) -> None:
    assert _code(build_request(model="m", text="ok") | change) is code


@pytest.mark.parametrize(
    ("tensor", "code"),
    [
        ({"dtype": "float128"}, ErrorCode.BAD_DTYPE),
        ({"dtype": "object"}, ErrorCode.BAD_DTYPE),
        ({"shape": [-8]}, ErrorCode.BAD_SHAPE),
        ({"shape": [2, -1]}, ErrorCode.BAD_SHAPE),
        ({"shape": [9]}, ErrorCode.TENSOR_SIZE_MISMATCH),
        ({"data": b"\x00" * 31}, ErrorCode.TENSOR_SIZE_MISMATCH),
        ({"dtype": "float64"}, ErrorCode.TENSOR_SIZE_MISMATCH),
        ({"data": np.full(8, np.nan, dtype=np.float32).tobytes()}, ErrorCode.NAN_TENSOR),
        ({"data": np.array([np.inf] + [0] * 7, dtype=np.float32).tobytes()}, ErrorCode.NAN_TENSOR),
    ],
)
def test_tensor_rules(tensor: dict[str, Any], code: ErrorCode) -> None:
    assert _code(_tensor_request(**tensor)) is code


def test_duplicate_tensor_names_are_refused() -> None:
    t = array_to_tensor("x", np.zeros(8, dtype=np.float32))
    assert _code(build_request(model="m", text="x") | {"payload": {"tensors": [t, t]}}) is ErrorCode.BAD_SHAPE


def test_nan_check_can_be_left_to_the_model() -> None:
    validate_request(_tensor_request(data=np.full(8, np.nan, dtype=np.float32).tobytes()), check_nan=False)


def test_has_nan() -> None:
    assert has_nan(np.array([1.0, np.nan]))
    assert has_nan(np.array([1.0, -np.inf], dtype=np.float16))
    assert not has_nan(np.array([1.0, -np.inf]), include_inf=False)
    assert not has_nan(np.array([1, 2], dtype=np.int32))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("size", [0, 1, 8, 31, 32, 33, 200])  # on both sides of the small-tensor path
@pytest.mark.parametrize("bad", [None, "nan", "inf", "-inf"])
def test_has_nan_bytes_agrees_with_numpy(dtype: str, size: int, bad: str | None) -> None:
    values = np.linspace(-3, 3, size).astype(dtype)
    if bad is not None and size:
        values[size // 2] = float(bad)
    data = values.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    for include_inf in (True, False):
        expected = has_nan(values, include_inf=include_inf)
        assert has_nan_bytes(data, WIRE_DTYPES[dtype], include_inf=include_inf) is expected
    assert has_nan_bytes(data, WIRE_DTYPES[dtype]) is (bad is not None and size > 0)


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        ([np.finfo(np.float32).max] * 64, False),  # the most a small tensor holds, each the largest float32
        ([np.finfo(np.float32).min] * 64, False),
        ([np.finfo(np.float32).max] * 63 + [np.inf], True),
        ([np.inf, -np.inf], True),  # opposite infinities: their sum is NaN
        ([-np.inf] + [np.finfo(np.float32).max] * 63, True),
        ([np.finfo(np.float32).tiny, -0.0, 0.0], False),
    ],
)
def test_has_nan_bytes_small_float32_at_the_edges(values: list[float], bad: bool) -> None:
    """A small float32 tensor is checked by one sum: the largest finite values must not add up to an
    infinity, and infinities of both signs must not cancel out."""
    data = np.array(values, dtype="<f4").tobytes()
    assert has_nan_bytes(data, WIRE_DTYPES["float32"]) is bad


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "uint8", "bool", "float64"])
def test_tensor_round_trip_is_little_endian(dtype: str) -> None:
    arr = (np.arange(12) % 3).astype(dtype).reshape(3, 4)
    wire = array_to_tensor("t", arr)
    assert wire["dtype"] == dtype and wire["shape"] == [3, 4]
    assert wire["data"] == arr.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    np.testing.assert_array_equal(tensor_to_array(wire), arr)


def test_big_endian_arrays_are_written_little_endian() -> None:
    big = np.arange(4, dtype=">i4")
    wire = array_to_tensor("b", big)
    assert wire["data"] == np.arange(4, dtype="<i4").tobytes()
    np.testing.assert_array_equal(tensor_to_array(wire), big)


def test_payload_arrays_accepts_tuple_notation() -> None:
    payload = tensor_payload({"a": np.ones(2, dtype=np.int32), "b": np.zeros((1, 2), dtype=np.float32)})
    arrays = payload_arrays(("pipeline.events.TensorPayload", payload))
    assert {k: v.shape for k, v in arrays.items()} == {"a": (2,), "b": (1, 2)}
    with pytest.raises(ValidationError):
        payload_arrays({"text": "not tensors"})


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_the_cached_dtype_name_is_numpys_for_every_wire_dtype_in_either_byte_order(byteorder: str) -> None:
    """Results name their tensors' dtypes through a cache keyed by dtype: a big-endian array (which the
    wire writes little-endian) and every other wire dtype get numpy's own name, never another's."""
    for name in WIRE_DTYPES:
        dtype = np.dtype(name)
        if dtype.itemsize > 1 and dtype.kind != "b":
            dtype = dtype.newbyteorder(byteorder)
        assert dtype_name(dtype) == dtype.name == np.dtype(name).name
        assert array_to_tensor("t", np.zeros(2, dtype))["dtype"] == name
