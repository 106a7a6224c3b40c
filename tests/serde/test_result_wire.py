"""The result's direct writer: its bytes are the codec's for the same result, for every output shape, both
framings and every field's edge; it refuses what the codec refuses (too large), and stands aside for any
writer schema other than the one it knows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.model.outcome import ModelInfo, Success
from pipeline.serde import EncodeError, ErrorCode, EventCodec, build_result
from pipeline.serde.result_wire import RESULT_V1_FINGERPRINT, ResultWire, long_bytes
from pipeline.stages.results import result_output
from tests.harness import REPO

SCHEMAS = REPO / "schemas"
INFO = ModelInfo("tiny", "1", "CPUExecutionProvider")


def _codec(**kw: Any) -> EventCodec:
    return EventCodec.from_settings(Settings(schemas_dir=SCHEMAS, **kw), "result")


def _both(
    codec: EventCodec,
    outcome: Success,
    request: dict[str, Any],
    *,
    queued_ms: float = 1.5,
    inference_ms: float = 2.25,
    batch_size: int = 32,
    worker_id: str = "w1",
    completed_at: int = 1_764_000_000_123,
) -> tuple[bytes, bytes]:
    """(the direct writer's bytes, the codec's bytes) for one result."""
    wire = ResultWire.for_codec(codec, "pipeline.output")
    assert wire is not None
    info = outcome.model
    batch = wire.batch(
        model=info.name,
        version=info.version,
        provider=info.provider,
        inference_ms=inference_ms,
        batch_size=batch_size,
        worker_id=worker_id,
    )
    direct = batch.write(
        request,
        embedding=outcome.embedding,
        outputs=outcome.outputs,
        truncated=outcome.truncated,
        queued_ms=queued_ms,
        completed_at=completed_at,
    )
    datum = build_result(
        request=request,
        model_name=info.name,
        model_version=info.version,
        provider=info.provider,
        output=result_output(outcome),
        queued_ms=queued_ms,
        inference_ms=inference_ms,
        batch_size=batch_size,
        worker_id=worker_id,
        completed_at=completed_at,
        truncated=outcome.truncated,
    )
    return direct, codec.encode(datum, "pipeline.output")


REQUEST = {"event_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "correlation_id": None, "created_at": 1_764_000_000_000}

TENSORS = {
    "float32 matrix": {"y": np.arange(12, dtype=np.float32).reshape(3, 4)},
    "several dtypes": {
        "a": np.array([1, -2, 3], dtype=np.int64),
        "b": np.array([True, False]),
        "c": np.array([0.5], dtype=np.float16),
        "d": np.array([1.0, 2.0], dtype=">f4"),  # big-endian: written little-endian
    },
    "a scalar": {"s": np.array(7.0, dtype=np.float64)},
    "an empty axis": {"e": np.zeros((0, 3), dtype=np.float32)},
    "a long shape": {"l": np.zeros((1,) * 64, dtype=np.uint8), "m": np.zeros((100, 2), dtype=np.int8)},
    "no outputs": {},
}


@pytest.mark.parametrize("name", list(TENSORS))
def test_tensor_results_are_the_codecs_bytes(name: str) -> None:
    direct, via_codec = _both(_codec(), Success(INFO, outputs=TENSORS[name]), REQUEST)
    assert direct == via_codec


@pytest.mark.parametrize("n", [0, 1, 63, 64, 384, 1000])
def test_embeddings_of_any_length_are_the_codecs_bytes(n: int) -> None:
    embedding = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    direct, via_codec = _both(_codec(), Success(INFO, embedding=embedding, truncated=n % 2 == 1), REQUEST)
    assert direct == via_codec


def test_special_floats_and_a_float64_embedding_are_the_codecs_bytes() -> None:
    embedding = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38], dtype=np.float64)
    direct, via_codec = _both(_codec(), Success(INFO, embedding=embedding), REQUEST)
    assert direct == via_codec


@settings(max_examples=150, deadline=None)
@given(
    event_id=st.text(max_size=40),
    correlation=st.none() | st.text(max_size=80),
    created=st.none() | st.integers(min_value=0, max_value=2**62) | st.text(max_size=3),
    worker=st.text(max_size=30),
    name=st.text(max_size=20),
    batch_size=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    completed=st.integers(min_value=-(2**62), max_value=2**62),
    queued=st.floats(allow_nan=False),
    inference=st.floats(allow_nan=False),
)
def test_every_fields_edge_is_the_codecs_bytes(
    event_id: str,
    correlation: str | None,
    created: Any,
    worker: str,
    name: str,
    batch_size: int,
    completed: int,
    queued: float,
    inference: float,
) -> None:
    request = {"event_id": event_id, "correlation_id": correlation, "created_at": created}
    outcome = Success(ModelInfo(name, name[::-1], "CUDAExecutionProvider"), embedding=np.ones(3, dtype=np.float32))
    direct, via_codec = _both(
        _codec(),
        outcome,
        request,
        queued_ms=queued,
        inference_ms=inference,
        batch_size=batch_size,
        worker_id=worker,
        completed_at=completed,
    )
    assert direct == via_codec


def test_one_batch_writer_gives_each_result_its_own_completed_at() -> None:
    # The writer keeps the last completed_at's bytes: results of one batch written at different
    # milliseconds (and back again, and at -1) still carry their own, byte for byte as the codec writes them.
    codec = _codec()
    wire = ResultWire.for_codec(codec, "pipeline.output")
    assert wire is not None
    batch = wire.batch(model="tiny", version="1", provider="CPU", inference_ms=1.0, batch_size=4, worker_id="w")
    outcome = Success(INFO, embedding=np.ones(2, dtype=np.float32))
    for at in (1_764_000_000_123, 1_764_000_000_123, 1_764_000_000_124, 1_764_000_000_123, -1, 0, 63, 64):
        direct = batch.write(
            REQUEST, embedding=outcome.embedding, outputs={}, truncated=False, queued_ms=0.5, completed_at=at
        )
        datum = build_result(
            request=REQUEST,
            model_name="tiny",
            model_version="1",
            provider="CPU",
            output=result_output(outcome),
            queued_ms=0.5,
            inference_ms=1.0,
            batch_size=4,
            worker_id="w",
            completed_at=at,
            truncated=False,
        )
        assert direct == codec.encode(datum, "pipeline.output"), at


def test_one_batch_writer_gives_each_result_its_own_tensor_heads() -> None:
    # The writer keeps each tensor's name, dtype and shape bytes for the batch: results whose tensors change
    # shape, dtype or name between events (and back) still carry their own, as the codec writes them.
    codec = _codec()
    wire = ResultWire.for_codec(codec, "pipeline.output")
    assert wire is not None
    batch = wire.batch(model="tiny", version="1", provider="CPU", inference_ms=1.0, batch_size=5, worker_id="w")
    for outputs in (
        {"y": np.arange(4, dtype=np.float32)},
        {"y": np.arange(6, dtype=np.float32).reshape(2, 3)},
        {"y": np.arange(4, dtype=np.float64)},
        {"y": np.arange(4, dtype=">f4")},
        {"z": np.arange(4, dtype=np.float32)},
        {"y": np.arange(4, dtype=np.float32), "z": np.array(1, dtype=np.int8)},
        {"y": np.arange(4, dtype=np.float32)},
    ):
        direct = batch.write(REQUEST, embedding=None, outputs=outputs, truncated=False, queued_ms=0.5, completed_at=7)
        datum = build_result(
            request=REQUEST,
            model_name="tiny",
            model_version="1",
            provider="CPU",
            output=result_output(Success(INFO, outputs=outputs)),
            queued_ms=0.5,
            inference_ms=1.0,
            batch_size=5,
            worker_id="w",
            completed_at=7,
            truncated=False,
        )
        assert direct == codec.encode(datum, "pipeline.output"), outputs


def test_confluent_framing_carries_the_registrys_id_as_the_codec_does() -> None:
    codec = _codec(schema_registry_url="mock://result-wire")
    assert codec.framing == "confluent"
    direct, via_codec = _both(codec, Success(INFO, embedding=np.ones(4, dtype=np.float32)), REQUEST)
    assert direct == via_codec and direct[0] == 0


def test_a_result_over_the_size_limit_is_refused_as_too_large() -> None:
    codec = _codec(max_message_bytes=1_000)
    with pytest.raises(EncodeError) as caught:
        _both(codec, Success(INFO, embedding=np.ones(400, dtype=np.float32)), REQUEST)
    assert caught.value.code == ErrorCode.TOO_LARGE


def test_it_knows_only_the_shipped_result_schema() -> None:
    codec = _codec()
    assert codec.writer_schema.fingerprint == RESULT_V1_FINGERPRINT
    assert ResultWire.for_codec(codec, "out") is not None
    requests = EventCodec.from_settings(Settings(schemas_dir=SCHEMAS), "request")
    assert ResultWire.for_codec(requests, "out") is None


def test_longs_are_zigzag_varints() -> None:
    assert [long_bytes(n) for n in (0, -1, 1, 63, 64, -65)] == [
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x7e",
        b"\x80\x01",
        b"\x81\x01",
    ]


def test_a_chunk_writes_each_models_results_with_that_models_constants() -> None:
    codec = _codec()
    wire = ResultWire.for_codec(codec, "pipeline.output")
    assert wire is not None
    chunk = wire.chunk(inference_ms=2.25, batch_size=32, worker_id="w1")
    other = ModelInfo("minilm-l6", "2", "CPUExecutionProvider")
    for info in (INFO, other, INFO):
        outcome = Success(info, embedding=np.ones(2, dtype=np.float32))
        direct = chunk.for_model(info.name, info.version, info.provider).write(
            REQUEST,
            embedding=outcome.embedding,
            outputs=outcome.outputs,
            truncated=False,
            queued_ms=1.5,
            completed_at=1_764_000_000_123,
        )
        assert direct == _both(codec, outcome, REQUEST)[1]
    assert chunk.for_model(INFO.name, INFO.version, INFO.provider) is chunk.for_model("tiny", "1", INFO.provider)
