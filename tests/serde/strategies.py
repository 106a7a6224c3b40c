"""Hypothesis strategies for valid events of each record type, in the codec's datum conventions."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.serde.codes import ErrorCode, Priority, Stage
from pipeline.serde.tensors import array_to_tensor
from pipeline.serde.validation import WIRE_DTYPES

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
MILLIS = st.integers(0, 2**53)
SHORT_TEXT = st.text(max_size=20)
UUIDS = st.uuids().map(str)
FLOAT32 = st.floats(width=32, allow_nan=False)
DOUBLES = st.floats(allow_nan=False)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(sorted(WIRE_DTYPES))))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    elements = {"allow_nan": False, "allow_infinity": False} if dtype.kind == "f" else None
    arr: np.ndarray = draw(hnp.arrays(dtype, shape, elements=elements))
    return arr


@st.composite
def tensor_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3, unique=True))
    return [array_to_tensor(name, draw(arrays())) for name in names]


PAYLOADS = st.one_of(
    st.text(min_size=1, max_size=300).filter(lambda t: t.strip() != "").map(lambda t: {"text": t}),
    tensor_lists().map(lambda ts: {"tensors": ts}),
)


@st.composite
def requests(draw: st.DrawFn, with_tenant: bool = True) -> dict[str, Any]:
    datum = {
        "event_id": draw(UUIDS),
        "created_at": draw(MILLIS),
        "source": draw(SHORT_TEXT),
        "model": {"name": draw(SHORT_TEXT), "version": draw(st.none() | SHORT_TEXT)},
        "priority": draw(st.sampled_from([p.value for p in Priority])),
        "payload": draw(PAYLOADS),
        "attributes": draw(st.dictionaries(SHORT_TEXT, SHORT_TEXT, max_size=4)),
        "correlation_id": draw(st.none() | SHORT_TEXT),
    }
    if with_tenant:
        datum["tenant"] = draw(st.none() | SHORT_TEXT)
    return datum


OUTPUTS = st.one_of(
    st.lists(FLOAT32, max_size=64).map(lambda v: {"embedding": v}),
    tensor_lists().map(lambda ts: {"tensors": ts}),
    st.builds(lambda label, score: {"label": label, "score": score}, SHORT_TEXT, FLOAT32),
)


@st.composite
def results(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event_id": draw(UUIDS),
        "correlation_id": draw(st.none() | SHORT_TEXT),
        "model": {"name": draw(SHORT_TEXT), "version": draw(SHORT_TEXT), "provider": draw(SHORT_TEXT)},
        "output": draw(OUTPUTS),
        "timings": {"queued_ms": draw(DOUBLES), "inference_ms": draw(DOUBLES), "end_to_end_ms": draw(DOUBLES)},
        "batch_size": draw(INT32),
        "worker_id": draw(SHORT_TEXT),
        "completed_at": draw(MILLIS),
        "truncated": draw(st.booleans()),
    }


@st.composite
def errors(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event_id": draw(st.none() | SHORT_TEXT),
        "stage": draw(st.sampled_from([s.value for s in Stage])),
        "error_code": draw(st.sampled_from([c.value for c in ErrorCode])),
        "message": draw(st.text(max_size=200)),
        "retryable": draw(st.booleans()),
        "attempts": draw(INT32),
        "source_topic": draw(SHORT_TEXT),
        "source_partition": draw(INT32),
        "source_offset": draw(INT64),
        "model": draw(st.none() | SHORT_TEXT),
        "occurred_at": draw(MILLIS),
    }
