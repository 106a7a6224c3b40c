"""Rules an event must meet that Avro cannot express, checked right after decoding.

The schema says a tensor has a dtype string, a shape and bytes; only here do we know that the dtype must be
one numpy knows, that no dimension is negative and that the bytes hold exactly ``prod(shape)`` items.
Each broken rule raises :class:`ValidationError` with the error-schema code for it, so the input agent can
dead-letter the event at once instead of the inference worker failing on it later. The caps on counts and
lengths (:mod:`pipeline.serde.limits`) are checked here as well, each before anything they size is
computed. Messages name the field (``payload.tensors[0].shape``) and cut what the record gave short.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeline.serde.codes import ErrorCode
from pipeline.serde.errors import ValidationError
from pipeline.serde.limits import (
    DEFAULT_LIMITS,
    Limits,
    check_envelope,
    check_text,
    element_count,
    shown,
    tensor_too_large,
    too_long,
    too_many,
)

if TYPE_CHECKING:
    import numpy as np


class WireDtype(NamedTuple):
    """A dtype a tensor may name: numpy's name for it, its kind (``b``, ``i``, ``u``, ``f``) and item size.
    Checking a tensor needs only these, so a process that validates requests (the input role) does not
    load numpy; the array type is made where an array is (:meth:`numpy`)."""

    name: str
    kind: str
    itemsize: int

    def numpy(self) -> np.dtype[Any]:
        """numpy's little-endian dtype of this name."""
        return _numpy_dtype(self.name)


@functools.cache
def _numpy_dtype(name: str) -> np.dtype[Any]:
    import numpy as np

    return np.dtype(name).newbyteorder("<")


# Dtypes a tensor may name: numpy's names for fixed-size numbers and bool. Bytes are little-endian.
WIRE_DTYPES: dict[str, WireDtype] = {
    dtype.name: dtype
    for dtype in (
        WireDtype("bool", "b", 1),
        WireDtype("int8", "i", 1),
        WireDtype("int16", "i", 2),
        WireDtype("int32", "i", 4),
        WireDtype("int64", "i", 8),
        WireDtype("uint8", "u", 1),
        WireDtype("uint16", "u", 2),
        WireDtype("uint32", "u", 4),
        WireDtype("uint64", "u", 8),
        WireDtype("float16", "f", 2),
        WireDtype("float32", "f", 4),
        WireDtype("float64", "f", 8),
    )
}


def _max_dims() -> int:
    """The most dims a numpy array may have (64 from numpy 2 on, 32 before), read from the installed
    version's metadata rather than from numpy itself."""
    try:
        major = int(version("numpy").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return 32
    return 64 if major >= 2 else 32


# A longer shape cannot become an array at all, so it is refused here rather than failing in the model
# runtime.
MAX_DIMS = _max_dims()

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(value: object) -> bool:
    """True for a UUID in canonical 8-4-4-4-12 hex form (any case), which ``event_id`` must be."""
    return isinstance(value, str) and len(value) == 36 and _UUID.fullmatch(value) is not None


def _payload_body(payload: Any) -> Any:
    # fastavro's tuple notation (name, value) is accepted as well as the plain dict
    return payload[1] if isinstance(payload, tuple) and len(payload) == 2 else payload


def check_tensor(
    tensor: Mapping[str, Any],
    *,
    event_id: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    where: str | None = None,
    items: int = 0,
) -> WireDtype:
    """Dtype known, shape non-negative and within the caps, byte length = prod(shape) * itemsize; returns
    the wire dtype. ``where`` names the tensor in messages (``payload.tensors[0]``); ``items`` is how many
    array items and map entries the record holds besides this shape's dims (``max_items`` caps them all)."""
    return _check_tensor(tensor, event_id, limits, where, None, items)


def _where(where: str | None, index: int | None, name: Any) -> str:
    """The tensor's name in a message. Only a failing check builds it: the f-string costs as much as one of
    the checks it names."""
    if index is not None:
        return f"payload.tensors[{index}]"
    return where if where is not None else f"tensor {shown(name)}"


def _check_tensor(
    tensor: Mapping[str, Any], event_id: str | None, limits: Limits, where: str | None, index: int | None, items: int
) -> WireDtype:
    name = tensor.get("name")
    if name.__class__ is str and len(name) > limits.max_text_chars:
        raise too_long(f"{_where(where, index, name)}.name", name, limits, event_id)
    dtype = WIRE_DTYPES.get(str(tensor.get("dtype")))
    if dtype is None:
        raise ValidationError(
            ErrorCode.BAD_DTYPE,
            f"{_where(where, index, name)}.dtype: {shown(tensor.get('dtype'))} is not one of {', '.join(WIRE_DTYPES)}",
            event_id=event_id,
        )
    shape = tensor.get("shape")
    if shape.__class__ is not list and not isinstance(shape, list | tuple):
        raise ValidationError(
            ErrorCode.BAD_SHAPE, f"{_where(where, index, name)}.shape: {shown(shape)} is not a list", event_id=event_id
        )
    if items + len(shape) > limits.max_items:
        raise too_many(f"{_where(where, index, name)}.shape", len(shape), "dims", limits, event_id, items + len(shape))
    if len(shape) > MAX_DIMS:
        raise ValidationError(
            ErrorCode.BAD_SHAPE,
            f"{_where(where, index, name)}.shape: {len(shape):,} dims, an array has at most {MAX_DIMS}",
            event_id=event_id,
        )
    for d in shape:
        if d.__class__ is not int or d < 0:
            raise ValidationError(
                ErrorCode.BAD_SHAPE,
                f"{_where(where, index, name)}.shape: {shown(shape)} must be non-negative ints",
                event_id=event_id,
            )
    elements = element_count(shape, limits.max_tensor_elements)
    if elements is None:
        raise tensor_too_large(_where(where, index, name), shape, limits, event_id)
    expected = elements * dtype.itemsize
    data = tensor.get("data")
    if (data.__class__ is not bytes and not isinstance(data, bytes | bytearray | memoryview)) or len(data) != expected:
        got = f"{len(data):,} bytes" if isinstance(data, bytes | bytearray | memoryview) else type(data).__name__
        raise ValidationError(
            ErrorCode.TENSOR_SIZE_MISMATCH,
            f"{_where(where, index, name)}.data: {got}, shape {shown(shape)} of {dtype.name} needs {expected:,}",
            event_id=event_id,
        )
    return dtype


# Up to this many bytes, a float tensor is checked element by element in Python: for a handful of numbers
# that is several times faster than numpy's per-call overhead (frombuffer, isfinite, all).
_SMALL_TENSOR_BYTES = 256
_LITTLE_ENDIAN = sys.byteorder == "little"


def has_nan_bytes(data: bytes, dtype: WireDtype, *, include_inf: bool = True) -> bool:
    """``has_nan`` of little-endian tensor bytes, without making an array when the tensor is small."""
    size = dtype.itemsize
    if dtype.kind == "f" and size in (4, 8) and _LITTLE_ENDIAN and len(data) <= _SMALL_TENSOR_BYTES:
        values = memoryview(data).cast("f") if size == 4 else memoryview(data).cast("d")
        if include_inf:
            if size == 4:
                # float32s summed as doubles: at most 64 of them cannot overflow, so the sum is finite
                # exactly when every one is (a NaN stays NaN, an infinity stays one or meets its opposite
                # in a NaN). One call in C instead of one per number.
                return not math.isfinite(sum(values))
            return not all(map(math.isfinite, values))
        return any(map(math.isnan, values))
    if dtype.kind != "f":
        return False
    import numpy as np  # a large or half-precision tensor: numpy is loaded once, when the first one comes

    return has_nan(np.frombuffer(data, dtype=dtype.numpy()), include_inf=include_inf)


def has_nan(array: np.ndarray, *, include_inf: bool = True) -> bool:
    """True when a floating-point array holds NaN (or, by default, an infinity); False for other kinds."""
    import numpy as np

    if array.dtype.kind not in "fc":
        return False
    return not bool(np.isfinite(array).all()) if include_inf else bool(np.isnan(array).any())


def check_tensors(
    tensors: Any,
    *,
    check_nan: bool = True,
    event_id: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    items: int = 0,
) -> None:
    """A tensor payload: one tensor or more, unique names, each well formed and within the caps (and finite,
    if asked); ``items`` is how many array items and map entries the record holds besides its tensors."""
    if not isinstance(tensors, list) or not tensors:
        raise ValidationError(ErrorCode.BAD_SHAPE, "payload.tensors: no tensors", event_id=event_id)
    items += len(tensors)
    if items > limits.max_items:
        raise too_many("payload.tensors", len(tensors), "tensors", limits, event_id, items)
    seen: set[str] = set()
    for i, tensor in enumerate(tensors):
        name = tensor.get("name")
        if name in seen:
            raise ValidationError(
                ErrorCode.BAD_SHAPE, f"payload.tensors[{i}].name: {shown(name)} given twice", event_id=event_id
            )
        seen.add(name)
        dtype = _check_tensor(tensor, event_id, limits, None, i, items)
        items += len(tensor["shape"])
        if check_nan and dtype.kind == "f" and has_nan_bytes(tensor["data"], dtype):
            raise ValidationError(
                ErrorCode.NAN_TENSOR, f"payload.tensors[{i}].data: NaN or infinity", event_id=event_id
            )


def validate_request(datum: Mapping[str, Any], *, check_nan: bool = True, limits: Limits = DEFAULT_LIMITS) -> None:
    """An ``InferenceRequest`` datum: UUID event id, every count and length within ``limits``, non-blank
    text or well-formed tensors."""
    event_id = datum.get("event_id")
    if not is_uuid(event_id):
        raise ValidationError(
            ErrorCode.INVALID_UUID,
            f"event_id: {shown(event_id)} is not a UUID",
            event_id=event_id if isinstance(event_id, str) else None,
        )
    assert isinstance(event_id, str)
    items = check_envelope(datum, limits, event_id)
    payload = datum.get("payload")
    if payload.__class__ is not dict:
        payload = _payload_body(payload)
    if payload.__class__ is not dict and not isinstance(payload, Mapping):
        raise ValidationError(ErrorCode.INVALID_DATUM, "payload is neither text nor tensors", event_id=event_id)
    if "text" in payload:
        text = payload["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValidationError(ErrorCode.EMPTY_TEXT, "payload.text: empty or blank", event_id=event_id)
        check_text("payload.text", text, limits, event_id)
    elif "tensors" in payload:
        check_tensors(payload["tensors"], check_nan=check_nan, event_id=event_id, limits=limits, items=items)
    else:
        raise ValidationError(ErrorCode.INVALID_DATUM, "payload is neither text nor tensors", event_id=event_id)


VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {"request": validate_request}
"""Per record type, what :class:`~pipeline.serde.codec.EventCodec` runs after decoding when validating,
with the default limits (:func:`validator_for` gives one with configured limits)."""


def validator_for(record_type: str, limits: Limits) -> Callable[[dict[str, Any]], None] | None:
    """The record type's validator with ``limits``; None for a type without semantic rules."""
    if record_type != "request" or limits == DEFAULT_LIMITS:
        return VALIDATORS.get(record_type)
    return functools.partial(validate_request, limits=limits)
