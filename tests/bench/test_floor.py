"""The floor (the job alone, no Kafka) does the whole job per event and measures its CPU."""

from __future__ import annotations

import pytest

from bench.floor import job_pass, measure
from bench.workload import requests_for
from pipeline.config import Settings
from pipeline.model.registry import load_registry
from pipeline.model.service import ModelService
from pipeline.serde import Codecs, EventCodec


@pytest.fixture
def tiny_cached() -> None:
    settings = Settings()
    if not load_registry(settings.models_file).get("tiny").path(settings.model_cache).is_file():
        pytest.skip("the tiny model is not in the model cache")


@pytest.mark.usefixtures("tiny_cached")
def test_a_pass_answers_every_event_in_batches() -> None:
    settings = Settings(model="tiny")
    codecs = Codecs.from_settings(settings)
    models = ModelService.from_settings(settings)
    try:
        values = [codecs.request.encode(r) for r in requests_for("tiny", 70, seed=2)]
        again = EventCodec.from_settings(settings, "request", validate=False)
        assert job_pass(codecs, again, models, values, 32) == 70
    finally:
        models.close()


@pytest.mark.usefixtures("tiny_cached")
def test_the_cpu_per_event_is_measured() -> None:
    got = measure("tiny", 200, 32, min_seconds=0.05)
    assert got["events"] >= 200 and got["cpu_s"] > 0
    assert got["cpu_us_per_event"] == pytest.approx(1e6 * got["cpu_s"] / got["events"])
