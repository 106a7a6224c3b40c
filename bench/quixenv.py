"""The Quix Streams baseline's own venv (``.venv-quix``, git-ignored), made on demand.

quixstreams 3.28 caps confluent-kafka below 2.13, so it never goes into the project's venv. The packages
the job's speed depends on (confluent-kafka, fastavro, onnxruntime, numpy, tokenizers) are pinned to
the versions in the project's venv, so that Quix runs the same libraries underneath as every other
design. The project itself is not installed there: the Quix design, like a Quix user's app, runs on
quixstreams, fastavro, ONNX Runtime and numpy alone (``bench/plain.py``), with the schema files.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from bench.designs import QUIX_PYTHON

QUIX_SPEC = "quixstreams==3.28.*"
SHARED = ("confluent-kafka", "fastavro", "onnxruntime-gpu", "onnxruntime", "numpy", "tokenizers")
# What the Quix design imports besides quixstreams: installed at the project venv's versions.
NEEDED = ("fastavro", "numpy", "tokenizers")


def _pins() -> list[str]:
    pins = []
    for name in SHARED:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def _onnxruntime() -> str:
    """The ONNX Runtime package the project's venv has (the GPU build where it has that one)."""
    try:
        metadata.version("onnxruntime-gpu")
        return "onnxruntime-gpu"
    except metadata.PackageNotFoundError:
        return "onnxruntime"


def ensure_quix_venv(log: Callable[[str], None] = print) -> Path | None:
    """The venv's python, created and installed when missing; None when that fails (the design is then
    reported as skipped, with the reason)."""
    venv = QUIX_PYTHON.parent.parent
    pins = _pins()
    stamp = venv / f".installed-{hashlib.sha1(repr((QUIX_SPEC, *pins)).encode()).hexdigest()[:12]}"
    if QUIX_PYTHON.is_file() and stamp.is_file():
        return QUIX_PYTHON
    log(f"installing {QUIX_SPEC} into {venv} (once)")
    if not QUIX_PYTHON.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(pins) + "\n")
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-c", constraints.name, QUIX_SPEC, *NEEDED, _onnxruntime()],
        capture_output=True,
        text=True,
    )
    Path(constraints.name).unlink(missing_ok=True)
    if done.returncode != 0:
        log(f"pip install into {venv} failed:\n{done.stderr[-2000:]}")
        return None
    for old in venv.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return QUIX_PYTHON
