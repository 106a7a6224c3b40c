"""The ``slow`` test model: ``tiny``'s interface and answer, after a wait that its input asks for.

x float32 [B, 8] -> y float32 [B, 4] with ``y == tiny.reference(x)``, like ``tiny``; before answering, a
``Loop`` runs as many iterations as the batch's first event asks for in ``x[0]`` (clipped to [0, 1e12],
plus ``floor_iterations``, cast to int64). Ordinary inputs (``|x[0]|`` of a few units) answer at once;
``x_asking(iterations_for(5.0))`` holds its whole batch for at least five seconds. ONNX Runtime checks
its terminate flag between the Loop's iterations, so a deadline cancels such a run within a millisecond.

For deadline tests, unit and end to end::

    models_file = slow_model.write(folder, batch_timeout_ms=300)
    # a worker: PIPELINE_MODELS_FILE=<models_file> PIPELINE_MODEL_CACHE=<folder>
    # an event that times out: {"x": slow_model.x_asking(slow_model.iterations_for(5.0))}

``write`` puts ``slow/model.onnx`` in ``folder`` (the model cache) and ``folder/models.toml`` listing
``tiny`` (generated into the cache on first load, as usual) and ``slow`` (no builder: the file must be
there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipeline.model import tiny

NAME = "slow"
ONNX = "slow/model.onnx"
# One Loop iteration is an executor pass over a two-node body: about 1.5 µs on the 2-core host these tests
# were written on. ``iterations_for`` counts 0.2 µs, so that "at least this long" holds on much faster CPUs.
FASTEST_ITERATIONS_PER_S = 5_000_000


def iterations_for(seconds: float) -> int:
    """Iterations that take at least ``seconds`` on any current CPU (several times that on a slow one)."""
    return int(seconds * FASTEST_ITERATIONS_PER_S)


def x_asking(iterations: int) -> np.ndarray:
    """An event's ``x`` (float32 [8]) that makes its batch loop ``iterations`` times when it comes first.

    float32 holds integers exactly up to 2**24; above that the count is rounded, which a wait does not mind.
    """
    x = np.zeros(tiny.IN_DIM, dtype=np.float32)
    x[0] = iterations
    return x


def build(floor_iterations: int = 0) -> onnx.ModelProto:
    """The graph. ``floor_iterations`` is added to every batch's count: > 0 makes a model that is slow for
    every input (one that is stuck, as far as a deadline can tell), warm-up and probe included."""
    w, b = tiny.weights()
    body = helper.make_graph(
        nodes=[
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["count_in", "one"], ["count_out"]),
        ],
        name="wait",
        inputs=[
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("count_in", TensorProto.FLOAT, []),
        ],
        outputs=[
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("count_out", TensorProto.FLOAT, []),
        ],
    )
    graph = helper.make_graph(
        nodes=[
            # the trip count: x[0, 0], clipped, plus the floor, as an int64 scalar
            helper.make_node("Gather", ["x", "zero_i"], ["first"], axis=0),
            helper.make_node("Gather", ["first", "zero_i"], ["x00"], axis=0),
            helper.make_node("Clip", ["x00", "zero", "most"], ["asked"]),
            helper.make_node("Add", ["asked", "floor"], ["trips_f"]),
            helper.make_node("Cast", ["trips_f"], ["trips"], to=TensorProto.INT64),
            helper.make_node("Loop", ["trips", "true", "zero"], ["count"], body=body),
            # tiny's answer, plus count * 0 so that the Loop is part of the result and is never pruned
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["xwb"]),
            helper.make_node("Relu", ["xwb"], ["answer"]),
            helper.make_node("Mul", ["count", "zero"], ["nothing"]),
            helper.make_node("Add", ["answer", "nothing"], ["y"]),
        ],
        name=NAME,
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", tiny.IN_DIM])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", tiny.OUT_DIM])],
        initializer=[
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(np.array(0, dtype=np.int64), "zero_i"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
            numpy_helper.from_array(np.array(1e12, dtype=np.float32), "most"),
            numpy_helper.from_array(np.array(float(floor_iterations), dtype=np.float32), "floor"),
            numpy_helper.from_array(np.array(True), "true"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", tiny.OPSET)], producer_name="tests")
    model.ir_version = tiny.IR_VERSION
    onnx.checker.check_model(model)
    return model


def write(folder: Path, *, batch_timeout_ms: int = 300, floor_iterations: int = 0, max_batch_size: int = 64) -> Path:
    """Write ``folder/slow/model.onnx`` and ``folder/models.toml`` (``tiny`` and ``slow``, the latter with
    this ``batch_timeout_ms``); returns the models.toml path. ``folder`` is the model cache."""
    path = folder / ONNX
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build(floor_iterations).SerializeToString())
    models_file = folder / "models.toml"
    models_file.write_text(
        f"""# Written by tests/slow_model.py: tiny, and slow (tiny's answer after a wait its input asks for).

[models.tiny]
version = "1"
task = "tensor"
builder = "tiny"
onnx = "tiny/model.onnx"
max_batch_size = 4096
inputs = {{ x = "x" }}
outputs = {{ y = "y" }}

[models.{NAME}]
version = "1"
task = "tensor"
onnx = "{ONNX}"
max_batch_size = {max_batch_size}
batch_timeout_ms = {batch_timeout_ms}
inputs = {{ x = "x" }}
outputs = {{ y = "y" }}
""",
        encoding="utf-8",
    )
    return models_file
