"""The peers' job (``bench/plain.py``) does what the pipeline's does, without the pipeline's code: it reads
the requests the bench writes, refuses what the input stage refuses, and writes results the pipeline's
codec reads. The peers import nothing of the pipeline."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.plain import Avro, Invalid, Model, result, validate
from bench.poison import records
from bench.workload import requests_for
from pipeline.config import Settings
from pipeline.model.registry import load_registry
from pipeline.serde import Codecs, EventError

REPO = Path(__file__).resolve().parents[2]
NAN = np.array([1, np.nan], "<f4").tobytes()


def test_requests_read_as_the_pipeline_reads_them() -> None:
    codec = Codecs.from_settings(Settings()).request
    avro = Avro()
    for request in requests_for("tiny", 20, seed=3):
        datum = avro.decode_request(codec.encode(request))
        validate(datum)
        assert datum["event_id"] == request["event_id"] and datum["created_at"] == request["created_at"]
        assert datum["payload"]["tensors"][0]["data"] == request["payload"]["tensors"][0]["data"]
        assert avro.encode_request(datum) == codec.encode(request)  # the same bytes on the wire


def test_what_the_input_stage_refuses_is_refused() -> None:
    codec = Codecs.from_settings(Settings()).request
    avro = Avro()
    for value in records(codec, 60, True):
        try:
            codec.decode(value)
            pipeline_ok = True
        except EventError:
            pipeline_ok = False
        try:
            validate(avro.decode_request(value))
            plain_ok = True
        except Invalid:
            plain_ok = False
        assert plain_ok == pipeline_ok, value[:16].hex()


@pytest.mark.parametrize(
    "change",
    [
        {"event_id": "not-a-uuid"},
        {"payload": {"text": "   "}},
        {"payload": {"tensors": [{"name": "x", "dtype": "float32", "shape": [2], "data": NAN}]}},
        {"payload": {"tensors": [{"name": "x", "dtype": "complex64", "shape": [1], "data": b"\0" * 8}]}},
        {"payload": {"tensors": []}},
        {"source": "s" * 100_001},
    ],
)  # fmt: skip
def test_each_rule_refuses_in_both(change: dict[str, object]) -> None:
    codec = Codecs.from_settings(Settings(), validate=False).request
    value = codec.encode({**requests_for("tiny", 1, seed=5)[0], **change})
    with pytest.raises(EventError):
        Codecs.from_settings(Settings()).request.decode(value)
    with pytest.raises(Invalid):
        validate(Avro().decode_request(value))


def test_results_are_read_by_the_pipelines_codec() -> None:
    settings = Settings()
    spec = load_registry(settings.models_file).get("tiny")
    path = spec.path(settings.model_cache)
    if not path.is_file():
        pytest.skip("the tiny model is not in the model cache")
    avro, model = Avro(), Model("tiny", spec.version, path)
    request = avro.decode_request(Codecs.from_settings(settings).request.encode(requests_for("tiny", 1, seed=7)[0]))
    ((output, truncated),) = model.run([request])
    value = avro.encode_result(result(request, model, output, truncated, inference_ms=0.1, batch_size=1, worker_id="w"))
    got = Codecs.from_settings(settings, validate=False).result.decode(value)
    assert got["event_id"] == request["event_id"] and got["model"]["provider"] == "CPUExecutionProvider"
    y = np.frombuffer(got["output"]["tensors"][0]["data"], "<f4")
    from pipeline.model.tiny import reference

    x = np.frombuffer(request["payload"]["tensors"][0]["data"], "<f4")
    np.testing.assert_allclose(y, reference(x[None])[0], rtol=1e-6)


def test_the_peers_import_nothing_of_the_pipeline() -> None:
    code = (
        "import sys, bench.raw_two_hop, bench.faust_per_event\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pipeline', 'bench.job', 'tests'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    # the Quix app runs from its own venv: its imports, read from its source
    tree = ast.parse((REPO / "bench" / "quix_app.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert imported <= {"__future__", "time", "collections.abc", "typing", "quixstreams", "bench", "bench.plain"}
