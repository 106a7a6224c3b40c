"""Rules an event must meet that Avro cannot express, checked right after decoding.

The schema says a tensor has a dtype string, a shape and bytes; only here do we know that the dtype must be
one numpy knows, that no dimension is negative and that the bytes hold exactly ``prod(shape)`` items.
Each broken rule raises :class:`ValidationError` with the error-schema code for it, so the input agent can
dead-letter the event at once instead of the inference worker failing on it later.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipeline.serde.codes import ErrorCode
from pipeline.serde.errors import ValidationError

# Dtypes a tensor may name: numpy's names for fixed-size numbers and bool. Bytes are little-endian.
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
}

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(value: object) -> bool:
    """True for a UUID in canonical 8-4-4-4-12 hex form (any case), which ``event_id`` must be."""
    return isinstance(value, str) and len(value) == 36 and _UUID.fullmatch(value) is not None


def _payload_body(payload: Any) -> Any:
    # fastavro's tuple notation (name, value) is accepted as well as the plain dict
    return payload[1] if isinstance(payload, tuple) and len(payload) == 2 else payload


def check_tensor(tensor: Mapping[str, Any], *, event_id: str | None = None) -> np.dtype[Any]:
    """Dtype known, shape non-negative, byte length = prod(shape) * itemsize; returns the wire dtype."""
    name = tensor.get("name")
    dtype = WIRE_DTYPES.get(str(tensor.get("dtype")))
    if dtype is None:
        raise ValidationError(
            ErrorCode.BAD_DTYPE,
            f"tensor {name!r}: dtype {tensor.get('dtype')!r} is not one of {', '.join(WIRE_DTYPES)}",
            event_id=event_id,
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list | tuple) or not all(d.__class__ is int and d >= 0 for d in shape):
        raise ValidationError(
            ErrorCode.BAD_SHAPE, f"tensor {name!r}: shape {shape!r} must be non-negative ints", event_id=event_id
        )
    data = tensor.get("data")
    expected = math.prod(shape) * dtype.itemsize
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) != expected:
        got = len(data) if isinstance(data, bytes | bytearray | memoryview) else type(data).__name__
        raise ValidationError(
            ErrorCode.TENSOR_SIZE_MISMATCH,
            f"tensor {name!r}: {got} bytes, shape {list(shape)} of {dtype.name} needs {expected}",
            event_id=event_id,
        )
    return dtype


# Up to this many bytes, a float tensor is checked element by element in Python: for a handful of numbers
# that is several times faster than numpy's per-call overhead (frombuffer, isfinite, all).
_SMALL_TENSOR_BYTES = 256
_LITTLE_ENDIAN = sys.byteorder == "little"


def has_nan_bytes(data: bytes, dtype: np.dtype[Any], *, include_inf: bool = True) -> bool:
    """``has_nan`` of little-endian tensor bytes, without making an array when the tensor is small."""
    # kind and itemsize, not name: numpy computes dtype.name in Python on every access
    size = dtype.itemsize
    if dtype.kind == "f" and size in (4, 8) and _LITTLE_ENDIAN and len(data) <= _SMALL_TENSOR_BYTES:
        values = memoryview(data).cast("f") if size == 4 else memoryview(data).cast("d")
        if include_inf:
            return not all(map(math.isfinite, values))
        return any(map(math.isnan, values))
    return has_nan(np.frombuffer(data, dtype=dtype), include_inf=include_inf)


def has_nan(array: np.ndarray, *, include_inf: bool = True) -> bool:
    """True when a floating-point array holds NaN (or, by default, an infinity); False for other kinds."""
    if array.dtype.kind not in "fc":
        return False
    return not bool(np.isfinite(array).all()) if include_inf else bool(np.isnan(array).any())


def check_tensors(tensors: Any, *, check_nan: bool = True, event_id: str | None = None) -> None:
    """A tensor payload: at least one tensor, unique names, each well formed (and finite, if asked)."""
    if not isinstance(tensors, list) or not tensors:
        raise ValidationError(ErrorCode.BAD_SHAPE, "tensor payload without tensors", event_id=event_id)
    seen: set[str] = set()
    for tensor in tensors:
        name = tensor.get("name")
        if name in seen:
            raise ValidationError(ErrorCode.BAD_SHAPE, f"tensor {name!r} given twice", event_id=event_id)
        seen.add(name)
        dtype = check_tensor(tensor, event_id=event_id)
        if check_nan and dtype.kind == "f" and has_nan_bytes(tensor["data"], dtype):
            raise ValidationError(ErrorCode.NAN_TENSOR, f"tensor {name!r} holds NaN or infinity", event_id=event_id)


def validate_request(datum: Mapping[str, Any], *, check_nan: bool = True) -> None:
    """An ``InferenceRequest`` datum: UUID event id, non-blank text or well-formed tensors."""
    event_id = datum.get("event_id")
    if not is_uuid(event_id):
        raise ValidationError(
            ErrorCode.INVALID_UUID,
            f"event_id {event_id!r} is not a UUID",
            event_id=event_id if isinstance(event_id, str) else None,
        )
    assert isinstance(event_id, str)
    payload = _payload_body(datum.get("payload"))
    if not isinstance(payload, Mapping):
        raise ValidationError(ErrorCode.INVALID_DATUM, "payload is neither text nor tensors", event_id=event_id)
    if "text" in payload:
        text = payload["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValidationError(ErrorCode.EMPTY_TEXT, "payload text is empty or blank", event_id=event_id)
    elif "tensors" in payload:
        check_tensors(payload["tensors"], check_nan=check_nan, event_id=event_id)
    else:
        raise ValidationError(ErrorCode.INVALID_DATUM, "payload is neither text nor tensors", event_id=event_id)


VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {"request": validate_request}
"""Per record type, what :class:`~pipeline.serde.codec.EventCodec` runs after decoding when validating."""
