"""What a successful model outcome becomes: the ``InferenceResult`` datum the inference agent writes.

Kept apart from the agent so that the benchmark's baselines build exactly the same result (same fields,
same output encoding) and differ from the pipeline only in how they move records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.model.outcome import Success
from pipeline.serde import build_result
from pipeline.serde.tensors import dtype_name, little_endian_bytes


def success_result(
    request: Mapping[str, Any],
    outcome: Success,
    *,
    inference_ms: float,
    batch_size: int,
    worker_id: str,
    queued_ms: float = 0.0,
) -> dict[str, Any]:
    """The result datum answering ``request`` with ``outcome`` of a model batch of ``batch_size``."""
    return build_result(
        request=request,
        model_name=outcome.model.name,
        model_version=outcome.model.version,
        provider=outcome.model.provider,
        output=result_output(outcome),
        queued_ms=queued_ms,
        inference_ms=inference_ms,
        batch_size=batch_size,
        worker_id=worker_id,
        truncated=outcome.truncated,
    )


def result_output(outcome: Success) -> dict[str, Any]:
    """The result's output union: an embedding, or named tensors (little-endian bytes, numpy dtype names)."""
    if outcome.embedding is not None:
        return {"embedding": outcome.embedding.astype(np.float32, copy=False).tolist()}
    tensors = []
    for name, array in outcome.outputs.items():
        data = little_endian_bytes(array)
        tensors.append({"name": name, "dtype": dtype_name(array.dtype), "shape": list(array.shape), "data": data})
    return {"tensors": tensors}
