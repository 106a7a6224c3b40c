"""Each role process loads only what it runs (unit tier: the input role's parts are built in a fresh
interpreter, no broker is reached): the model runtime is most of a role's memory, and the input role,
which decodes, validates and routes, must not pay for it; no role, which has no terminal, pays for the
status line's terminal library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BUILD_INPUT_ROLE = """
import json, sys
from pipeline.config import Settings
from pipeline.observability.health import Health
from pipeline.observability.metrics import Metrics
from pipeline.worker.build import build_runtime
from pipeline.worker.readers import reader_names
from pipeline.worker.run import run_worker  # what a role process imports to run

settings = Settings(bootstrap_servers="127.0.0.1:1", model="tiny")
metrics = Metrics()
runtime = build_runtime(settings, ["input"], metrics, Health(metrics, reader_names(["input"]), 60.0))
assert [role.name for role in runtime.roles] == ["input"], runtime.roles
loaded = sorted(name for name in ("numpy", "onnxruntime", "tokenizers", "onnx", "rich") if name in sys.modules)
for writer in runtime.writers:
    writer.close(timeout_s=0.1)
print(json.dumps(loaded))
"""


def test_the_input_role_loads_no_model_runtime_no_numpy_and_no_terminal_ui() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_INPUT_ROLE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_large_float_tensor_is_still_checked_for_nan_in_such_a_process() -> None:
    # The input role checks small float tensors without numpy and loads it for the first large one.
    probe = (
        "import math, struct, sys\n"
        "from pipeline.serde.validation import WIRE_DTYPES, has_nan_bytes\n"
        "small = struct.pack('<4f', 1, 2, 3, math.nan)\n"
        "assert has_nan_bytes(small, WIRE_DTYPES['float32'])\n"
        "assert 'numpy' not in sys.modules\n"
        "large = struct.pack('<1000d', *range(999), math.inf)\n"
        "assert has_nan_bytes(large, WIRE_DTYPES['float64'])\n"
        "assert not has_nan_bytes(struct.pack('<1000d', *range(1000)), WIRE_DTYPES['float64'])\n"
        "assert not has_nan_bytes(b'\\xff' * 4000, WIRE_DTYPES['int32'])\n"
        "print('numpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "True"
