"""Model-test fixtures. The tiny model lives in a per-test temp cache (it is generated on demand);
minilm-l6 comes from the real model cache (``PIPELINE_MODEL_CACHE`` / Settings.model_cache), which
``./scripts/test`` fills with ``pipeline model export`` before the suite runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.model import ModelRunner, Registry, load_registry

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry(REPO / "models.toml")


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return Settings().model_cache


@pytest.fixture
def tiny_runner(registry: Registry, tmp_path: Path) -> Iterator[ModelRunner]:
    runner = ModelRunner(registry.get("tiny"), tmp_path, device="cpu")
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def minilm_runner(registry: Registry, model_cache: Path) -> Iterator[ModelRunner]:
    spec = registry.get("minilm-l6")
    if not spec.path(model_cache).is_file():
        pytest.skip(f"minilm-l6 is not exported in {model_cache}: run `pipeline model export`")
    runner = ModelRunner(spec, model_cache, device="cpu", warm_up_batch=8)
    yield runner
    runner.close()
