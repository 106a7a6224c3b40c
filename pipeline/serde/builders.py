"""Small constructors for request, result and error datums, in the codec's conventions.

Timestamps are ``int`` milliseconds since the Unix epoch (UTC) everywhere, as the ``timestamp-millis``
fields hold them on the wire; :func:`now_millis` gives one. Enum fields take the :mod:`codes` members or
their symbol strings. The builders only shape dicts: the codec checks them against the schema.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.serde.codes import ErrorCode, Priority, Stage

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

MAX_ERROR_MESSAGE = 4000


def now_millis() -> int:
    """Wall-clock time as the ``timestamp-millis`` fields expect it."""
    return time.time_ns() // 1_000_000


def build_request(
    *,
    model: str,
    text: str | None = None,
    tensors: Mapping[str, ArrayLike] | None = None,
    source: str = "pipeline",
    model_version: str | None = None,
    priority: Priority | str = Priority.NORMAL,
    attributes: Mapping[str, str] | None = None,
    correlation_id: str | None = None,
    event_id: str | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """An ``InferenceRequest`` datum: exactly one of ``text`` and ``tensors``."""
    if (text is None) == (tensors is None):
        raise ValueError("give exactly one of text and tensors")
    payload = text_payload(text) if text is not None else _tensor_payload(tensors or {})
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "created_at": now_millis() if created_at is None else created_at,
        "source": source,
        "model": {"name": model, "version": model_version},
        "priority": str(priority),
        "payload": payload,
        "attributes": dict(attributes or {}),
        "correlation_id": correlation_id,
    }


def text_payload(text: str) -> dict[str, Any]:
    """A text -> the ``payload`` of a request for a text model."""
    return {"text": text}


def embedding_output(vector: ArrayLike) -> dict[str, Any]:
    """The ``output`` of a text-embedding result (Avro ``float``: 32-bit on the wire)."""
    import numpy as np  # here, not at the top: a process that only routes failures never loads numpy

    return {"embedding": np.asarray(vector, dtype=np.float32).tolist()}


def classification_output(label: str, score: float) -> dict[str, Any]:
    return {"label": label, "score": float(score)}


def build_result(
    *,
    request: Mapping[str, Any],
    model_name: str,
    model_version: str,
    provider: str,
    output: dict[str, Any] | None = None,
    embedding: ArrayLike | None = None,
    tensors: Mapping[str, ArrayLike] | None = None,
    queued_ms: float = 0.0,
    inference_ms: float = 0.0,
    end_to_end_ms: float | None = None,
    batch_size: int = 1,
    worker_id: str = "",
    completed_at: int | None = None,
    truncated: bool = False,
) -> dict[str, Any]:
    """An ``InferenceResult`` datum answering ``request`` (its ids are copied).

    Give the output as ``output`` (an embedding, tensors or classification dict) or ``embedding`` or
    ``tensors``. ``end_to_end_ms`` defaults to now minus the request's ``created_at``.
    """
    given = [x is not None for x in (output, embedding, tensors)]
    if sum(given) != 1:
        raise ValueError("give exactly one of output, embedding and tensors")
    if output is None:
        output = embedding_output(embedding) if embedding is not None else _tensor_payload(tensors or {})
    done = now_millis() if completed_at is None else completed_at
    if end_to_end_ms is None:
        created = request.get("created_at")
        end_to_end_ms = float(max(0, done - created)) if isinstance(created, int) else 0.0
    return {
        "event_id": request["event_id"],
        "correlation_id": request.get("correlation_id"),
        "model": {"name": model_name, "version": model_version, "provider": provider},
        "output": output,
        "timings": {
            "queued_ms": float(queued_ms),
            "inference_ms": float(inference_ms),
            "end_to_end_ms": float(end_to_end_ms),
        },
        "batch_size": int(batch_size),
        "worker_id": worker_id,
        "completed_at": done,
        "truncated": bool(truncated),
    }


def build_error(
    *,
    stage: Stage | str,
    error_code: ErrorCode | str,
    message: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    event_id: str | None = None,
    retryable: bool = False,
    attempts: int = 1,
    model: str | None = None,
    occurred_at: int | None = None,
) -> dict[str, Any]:
    """An ``InferenceError`` datum; the message is cut to a few kilobytes so one error stays small."""
    return {
        "event_id": event_id,
        "stage": str(Stage(stage)),
        "error_code": str(ErrorCode(error_code)),
        "message": message[:MAX_ERROR_MESSAGE],
        "retryable": bool(retryable),
        "attempts": int(attempts),
        "source_topic": source_topic,
        "source_partition": int(source_partition),
        "source_offset": int(source_offset),
        "model": model,
        "occurred_at": now_millis() if occurred_at is None else occurred_at,
    }


def float_list(values: Sequence[float] | np.ndarray) -> list[float]:
    """Floats as Avro ``float`` will give them back (rounded to 32 bits), for comparisons in tests."""
    import numpy as np

    return np.asarray(values, dtype=np.float32).tolist()


def _tensor_payload(arrays: Mapping[str, ArrayLike]) -> dict[str, Any]:
    from pipeline.serde.tensors import tensor_payload  # numpy, loaded by whoever builds tensors

    return tensor_payload(arrays)
