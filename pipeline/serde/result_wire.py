"""An ``InferenceResult`` v1 written straight to its Avro bytes, for the inference role's hot path.

Why: the generic writer walks the result datum field by field and writes an embedding's floats one at a
time, and most of a result is the same for every event of a model batch (the model, its version and
provider, the batch's inference time and size, the worker). The layout is fixed by the schema, so a
batch's constant parts are written once (:class:`BatchWire`) and each event adds its own fields around
them; an embedding is one ``tobytes`` of little-endian float32s. The bytes are exactly what the codec
writes for the same datum (``tests/serde/test_result_wire.py`` compares them), and the writer applies only
while the codec writes this exact schema (its canonical fingerprint): any other writer schema, and any
result a post-process hook has changed, goes through the codec.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.serde.codec import EventCodec
from pipeline.serde.codes import ErrorCode
from pipeline.serde.errors import EncodeError
from pipeline.serde.tensors import dtype_name, little_endian_bytes

# The Parsing Canonical Form fingerprint (CRC-64-AVRO) of schemas/inference_result/v1.avsc: docs and
# logical types aside, the layout this module writes.
RESULT_V1_FINGERPRINT = bytes.fromhex("9379de9ead647385")

_DOUBLE = struct.Struct("<d").pack
_FLOAT32_LE = np.dtype("<f4")
_NULL, _SECOND = b"\x00", b"\x02"  # union branch 0 (null; an embedding), branch 1 (a string; tensors)
_FALSE, _TRUE = b"\x00", b"\x01"
_END = b"\x00"  # an array's last block: count 0


def _zigzag_varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = tuple(_zigzag_varint(n) for n in range(64))  # the counts and lengths of nearly every field


def long_bytes(n: int) -> bytes:
    """An Avro int or long: zig-zag, then a base-128 varint."""
    return _SMALL[n] if 0 <= n < 64 else _zigzag_varint(n)


def string_bytes(text: str) -> bytes:
    data = text.encode()
    return long_bytes(len(data)) + data


Heads = dict[tuple[str, np.dtype[Any], tuple[int, ...]], bytes]


def output_bytes(embedding: np.ndarray | None, outputs: Mapping[str, np.ndarray], heads: Heads | None = None) -> bytes:
    """The ``output`` union: an embedding (branch 0) when there is one, else named tensors (branch 1), as
    the codec writes :func:`pipeline.stages.results.result_output`'s datum. ``heads`` keeps each tensor's
    name, dtype and shape as written, by those three: the events of a batch share them."""
    if embedding is not None:
        floats = np.ascontiguousarray(embedding, dtype=_FLOAT32_LE).reshape(-1)
        if not floats.size:
            return _NULL + _END
        return b"".join((_NULL, long_bytes(floats.size), floats.tobytes(), _END))
    if not outputs:
        return _SECOND + _END
    parts = [_SECOND, long_bytes(len(outputs))]
    for name, array in outputs.items():
        data = little_endian_bytes(array)
        key = (name, array.dtype, array.shape)
        head = heads.get(key) if heads is not None else None
        if head is None:
            head = _tensor_head(name, array.dtype, array.shape)
            if heads is not None:
                heads[key] = head
        parts += (head, long_bytes(len(data)), data)
    parts.append(_END)
    return b"".join(parts)


def _tensor_head(name: str, dtype: np.dtype[Any], shape: tuple[int, ...]) -> bytes:
    """A tensor's fields before its data: name, dtype and shape (an array: count, dims, end)."""
    parts = [string_bytes(name), string_bytes(dtype_name(dtype))]
    if shape:
        parts += (long_bytes(len(shape)), *(long_bytes(d) for d in shape), _END)
    else:
        parts.append(_END)
    return b"".join(parts)


class ResultWire:
    """Writes one codec's results directly, when that codec writes ``InferenceResult`` v1."""

    def __init__(self, codec: EventCodec, topic: str) -> None:
        self._codec = codec
        self._topic = topic

    @classmethod
    def for_codec(cls, codec: EventCodec, topic: str) -> ResultWire | None:
        """None when the codec writes any other schema: its results go through the codec."""
        return cls(codec, topic) if codec.writer_schema.fingerprint == RESULT_V1_FINGERPRINT else None

    def chunk(self, *, inference_ms: float, batch_size: int, worker_id: str) -> ChunkWire:
        """The writers of one model batch's results, one per model that answered in it."""
        return ChunkWire(self, inference_ms, batch_size, worker_id)

    def batch(
        self, *, model: str, version: str, provider: str, inference_ms: float, batch_size: int, worker_id: str
    ) -> BatchWire:
        """A model batch's constant parts, written once. The framing's header may ask the registry for the
        schema's id (once per topic, then cached): a registry that cannot answer raises here, for the batch."""
        return BatchWire(
            self._codec.header(self._topic),
            string_bytes(model) + string_bytes(version) + string_bytes(provider),
            _DOUBLE(float(inference_ms)),
            long_bytes(int(batch_size)) + string_bytes(worker_id),
            self._codec.max_message_bytes,
        )


class ChunkWire:
    """A model batch's results, whichever models answered it: each model's constant parts written once."""

    __slots__ = ("_batch_size", "_batches", "_inference_ms", "_wire", "_worker_id")

    def __init__(self, wire: ResultWire, inference_ms: float, batch_size: int, worker_id: str) -> None:
        self._wire, self._inference_ms, self._batch_size, self._worker_id = wire, inference_ms, batch_size, worker_id
        self._batches: dict[tuple[str, str, str], BatchWire] = {}

    def for_model(self, model: str, version: str, provider: str) -> BatchWire:
        """The writer of this model's results in the batch (see :meth:`ResultWire.batch` for what may raise)."""
        key = (model, version, provider)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = self._wire.batch(
                model=model,
                version=version,
                provider=provider,
                inference_ms=self._inference_ms,
                batch_size=self._batch_size,
                worker_id=self._worker_id,
            )
        return batch


class BatchWire:
    """One model batch's results: each event's bytes around the batch's constant parts."""

    __slots__ = ("_at", "_at_bytes", "_header", "_heads", "_inference", "_limit", "_model", "_tail")

    def __init__(self, header: bytes, model: bytes, inference: bytes, tail: bytes, limit: int) -> None:
        self._header, self._model, self._inference, self._tail, self._limit = header, model, inference, tail, limit
        # A batch's results are written within a millisecond or two, so most share their ``completed_at``:
        # its varint (a Python loop over a 41-bit number) is written once per value, not once per event.
        self._at: int | None = None
        self._at_bytes = b""
        self._heads: Heads = {}  # each output tensor's name, dtype and shape, written once per batch

    def write(
        self,
        request: Mapping[str, Any],
        *,
        embedding: np.ndarray | None,
        outputs: Mapping[str, np.ndarray],
        truncated: bool,
        queued_ms: float,
        completed_at: int,
    ) -> bytes:
        """The framed result answering ``request`` with the model's ``embedding`` or ``outputs``, built at
        ``completed_at`` (ms since the epoch)."""
        event_id = request["event_id"]
        correlation = request.get("correlation_id")
        created = request.get("created_at")
        end_to_end_ms = float(max(0, completed_at - created)) if isinstance(created, int) else 0.0
        if completed_at != self._at:
            self._at, self._at_bytes = completed_at, long_bytes(completed_at)
        data = b"".join(
            (
                self._header,
                string_bytes(event_id if event_id.__class__ is str else str(event_id)),
                _NULL if correlation is None else _SECOND + string_bytes(correlation),
                self._model,
                output_bytes(embedding, outputs, self._heads),
                _DOUBLE(queued_ms),
                self._inference,
                _DOUBLE(end_to_end_ms),
                self._tail,
                self._at_bytes,
                _TRUE if truncated else _FALSE,
            )
        )
        if len(data) > self._limit:
            raise EncodeError(ErrorCode.TOO_LARGE, f"{len(data)} bytes encoded, max_message_bytes is {self._limit}")
        return data
