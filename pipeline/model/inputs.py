"""What one event gives the model: a text, or named tensors without a batch axis.

Kept independent of the Avro serde: a processor either builds a :class:`ModelInput` itself or hands the
decoded request payload (``{"text": str}`` or ``{"tensors": [{"name", "dtype", "shape", "data"}]}``) to
:meth:`ModelInput.from_payload`, which turns a malformed tensor into an :class:`InputError` for that
event alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.model.errors import InputError
from pipeline.serde.codes import ErrorCode
from pipeline.serde.validation import WIRE_DTYPES as _SERDE_DTYPES

# Dtypes a request may name (numpy's names; bytes little-endian): the wire format's own list.
WIRE_DTYPES: frozenset[str] = frozenset(_SERDE_DTYPES)


@dataclass(frozen=True, slots=True)
class ModelInput:
    """One event's model input. Exactly one of ``text`` and ``tensors`` is expected."""

    text: str | None = None
    tensors: Mapping[str, np.ndarray] | None = None

    @classmethod
    def from_payload(cls, payload: Any) -> ModelInput:
        """Build from a decoded request payload; raises :class:`InputError` for a malformed tensor.

        Accepts fastavro's tuple notation for a union branch (``(name, value)``) as well as the plain dict.
        """
        if isinstance(payload, tuple) and len(payload) == 2:
            payload = payload[1]
        if isinstance(payload, ModelInput):
            return payload
        if not isinstance(payload, Mapping):
            raise InputError(ErrorCode.EMPTY_TEXT, f"payload is neither text nor tensors: {type(payload)}")
        if payload.get("text") is not None:
            return cls(text=str(payload["text"]))
        wire = payload.get("tensors")
        if wire is None:
            raise InputError(ErrorCode.EMPTY_TEXT, "payload has neither text nor tensors")
        return cls(tensors={str(t["name"]): decode_tensor(t) for t in wire})


def decode_tensor(wire: Mapping[str, Any]) -> np.ndarray:
    """``{"name", "dtype", "shape", "data": bytes}`` -> a read-only numpy array of that shape."""
    name = wire.get("name", "?")
    dtype = str(wire.get("dtype", ""))
    if dtype not in WIRE_DTYPES:
        raise InputError(ErrorCode.BAD_DTYPE, f"tensor {name!r}: unsupported dtype {dtype!r}")
    try:
        shape = tuple(int(d) for d in wire.get("shape", ()))
    except (TypeError, ValueError):
        raise InputError(ErrorCode.BAD_SHAPE, f"tensor {name!r}: shape is not a list of ints") from None
    if any(d < 0 for d in shape):
        raise InputError(ErrorCode.BAD_SHAPE, f"tensor {name!r}: negative dimension in {list(shape)}")
    data = wire.get("data", b"")
    np_dtype = np.dtype(dtype).newbyteorder("<")
    expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if len(data) != expected:
        raise InputError(
            ErrorCode.TENSOR_SIZE_MISMATCH,
            f"tensor {name!r}: {len(data)} bytes, shape {list(shape)} of {dtype} needs {expected}",
        )
    return np.frombuffer(data, dtype=np_dtype).reshape(shape).astype(dtype, copy=False)


def encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """The inverse of :func:`decode_tensor`, for generators, tests and results."""
    arr = np.ascontiguousarray(array)
    return {
        "name": name,
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "data": arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes(),
    }
