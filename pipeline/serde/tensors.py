"""Tensors on the wire <-> numpy arrays.

A wire tensor is ``{"name", "dtype", "shape", "data"}``: numpy's dtype name, the shape without the batch
axis, and the little-endian C-order bytes. Decoding is zero-copy (``np.frombuffer``), so the arrays are
read-only views of the message bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pipeline.serde.validation import check_tensor, check_tensors

_LITTLE_HOST = sys.byteorder == "little"


def little_endian_bytes(array: np.ndarray) -> bytes:
    """An array's C-order elements as little-endian bytes: ``tobytes`` as it is when they already are."""
    dtype = array.dtype
    if dtype.byteorder in ("<", "|") or (dtype.byteorder == "=" and _LITTLE_HOST):
        return array.tobytes()
    return array.astype(dtype.newbyteorder("<")).tobytes()


_DTYPE_NAMES: dict[np.dtype[Any], str] = {}


def dtype_name(dtype: np.dtype[Any]) -> str:
    """numpy's name of a dtype, as the wire writes it. numpy builds ``dtype.name`` in Python on every
    access (several calls), and a result writes one per output tensor per event: once per dtype is enough."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES.setdefault(dtype, dtype.name)
    return name


def tensor_to_array(tensor: Mapping[str, Any]) -> np.ndarray:
    """One wire tensor -> a read-only array of its shape; raises ValidationError when malformed."""
    dtype = check_tensor(tensor)
    return np.frombuffer(tensor["data"], dtype=dtype.numpy()).reshape(tuple(tensor["shape"]))


def array_to_tensor(name: str, array: ArrayLike) -> dict[str, Any]:
    """An array -> a wire tensor (little-endian bytes whatever the host's byte order)."""
    arr = np.ascontiguousarray(array)
    shape = [int(d) for d in arr.shape]
    return {"name": name, "dtype": dtype_name(arr.dtype), "shape": shape, "data": little_endian_bytes(arr)}


def payload_arrays(payload: Any, *, check_nan: bool = False) -> dict[str, np.ndarray]:
    """A request's tensor payload (dict, or fastavro's ``(name, dict)`` tuple) -> name -> array."""
    body = payload[1] if isinstance(payload, tuple) else payload
    tensors = body.get("tensors") if isinstance(body, Mapping) else None
    check_tensors(tensors, check_nan=check_nan)
    assert isinstance(tensors, list)
    return {str(t["name"]): tensor_to_array(t) for t in tensors}


def tensor_payload(arrays: Mapping[str, ArrayLike]) -> dict[str, Any]:
    """Named arrays -> the ``payload`` of a request (or the ``output`` of a result) holding tensors."""
    return {"tensors": [array_to_tensor(name, arr) for name, arr in arrays.items()]}
