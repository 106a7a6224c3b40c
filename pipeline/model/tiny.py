"""The ``tiny`` tensor model: y = relu(x @ W + b), x float32 [B, 8] -> y float32 [B, 4].

It exists so that tests and Kafka benchmarks exercise the whole tensor path (validation, stacking,
batching, ONNX Runtime) in microseconds, leaving the pipeline itself as the bottleneck. Its weights are
fixed arithmetic (no RNG), so :func:`reference` gives the exact expected answer in numpy.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.model.errors import ExportError

if TYPE_CHECKING:
    import onnx

IN_DIM = 8
OUT_DIM = 4
OPSET = 17
IR_VERSION = 9  # what onnxruntime >= 1.16 reads


def weights() -> tuple[np.ndarray, np.ndarray]:
    """W [8, 4] and b [4], small mixed-sign values so that relu keeps some outputs and zeroes others."""
    i, j = np.meshgrid(np.arange(IN_DIM), np.arange(OUT_DIM), indexing="ij")
    w = (((i * OUT_DIM + j) * 7) % 11 - 5).astype(np.float32) / 8.0
    b = np.array([0.1, -0.2, 0.3, -0.4], dtype=np.float32)
    return w, b


def reference(x: np.ndarray) -> np.ndarray:
    """The model's answer in numpy, for checks and tests."""
    w, b = weights()
    return np.maximum(x.astype(np.float32) @ w + b, 0.0).astype(np.float32)


def build() -> onnx.ModelProto:
    """The ONNX graph: MatMul, Add, Relu with a dynamic batch axis. ``onnx`` is imported here, only when the
    model is written: a worker that reads it from the cache never loads it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = weights()
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["xwb"]),
            helper.make_node("Relu", ["xwb"], ["y"]),
        ],
        name="tiny",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN_DIM])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT_DIM])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pipeline")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def check(model_bytes: bytes) -> None:
    """Run the graph in ONNX Runtime (CPU) against :func:`reference`; raise if they differ."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    x = np.linspace(-3, 3, 16 * IN_DIM, dtype=np.float32).reshape(16, IN_DIM)
    (y,) = session.run(["y"], {"x": x})
    if not np.allclose(y, reference(x), atol=1e-6):
        raise ExportError("the tiny model disagrees with its numpy reference")


def ensure(path: Path, force: bool = False) -> tuple[Path, bool]:
    """Write the model to ``path`` unless it is there; returns (path, written). Atomic: temp then rename."""
    if path.exists() and not force:
        return path, False
    data = build().SerializeToString()
    check(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tiny-", suffix=".onnx", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path, True
