"""The inference stage: records in, results (or error events and dead letters) out, with the real tiny
model and no broker."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.model.outcome import Success
from pipeline.model.service import ModelService
from pipeline.observability.metrics import Metrics
from pipeline.serde import Codecs, EventCodec, build_request
from pipeline.serde.deadletter import read_context
from pipeline.stages.hooks import HookRegistry
from pipeline.stages.inference import InferenceStage
from tests.stages.conftest import Consumed, batch_of, by_topic, router


def refuse_tagged(request: dict[str, Any]) -> None:
    if (request.get("attributes") or {}).get("refuse"):
        raise RuntimeError("refused on purpose")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelService:
    settings = Settings(model="tiny", device="cpu", model_cache=tmp_path_factory.mktemp("models"))
    return ModelService.from_settings(settings)


def _stage(
    settings: Settings, codecs: Codecs, models: ModelService, hooks: HookRegistry | None = None
) -> InferenceStage:
    metrics = Metrics()
    hooks = hooks or HookRegistry()
    return InferenceStage(
        EventCodec.from_settings(settings, "request", validate=False),
        codecs.result,
        models,
        router(settings, codecs, metrics, hooks),
        settings.topics.output,
        "w1",
        metrics,
        hooks=hooks,
        batch_size=4,
    )


def test_every_request_gets_its_result_in_order(settings: Settings, codecs: Codecs, models: ModelService) -> None:
    rng = np.random.default_rng(3)
    xs = [rng.random(8, dtype=np.float32) for _ in range(10)]
    requests = [build_request(model="tiny", tensors={"x": x}) for x in xs]
    records = [
        Consumed(codecs.request.encode(r), f"k{i}".encode(), [("traceparent", b"t")]) for i, r in enumerate(requests)
    ]
    out = asyncio.run(_stage(settings, codecs, models).process(batch_of(records)))
    assert {r.topic for r in out} == {settings.topics.output}
    results = [codecs.result.decode(r.value) for r in out]
    assert [r["event_id"] for r in results] == [q["event_id"] for q in requests]
    assert [r.key for r in out] == [f"k{i}".encode() for i in range(10)]
    assert all(r.headers == [("traceparent", b"t")] for r in out)
    direct = models.run_batch([("tiny", {"tensors": q["payload"]["tensors"]}) for q in requests])
    for result, expected in zip(results, direct, strict=True):
        assert isinstance(expected, Success)
        (tensor,) = result["output"]["tensors"]
        got = np.frombuffer(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        np.testing.assert_allclose(got, expected.outputs["y"], rtol=1e-6)
        assert result["worker_id"] == "w1" and 1 <= result["batch_size"] <= 4


def test_a_failing_hook_or_bad_record_fails_alone(settings: Settings, codecs: Codecs, models: ModelService) -> None:
    hooks = HookRegistry.from_paths(pre=[f"{__name__}:refuse_tagged"])
    x = np.ones(8, np.float32)
    good = [build_request(model="tiny", tensors={"x": x}) for _ in range(3)]
    refused = build_request(model="tiny", tensors={"x": x}, attributes={"refuse": "1"})
    short = build_request(model="tiny", tensors={"x": np.ones(3, np.float32)})  # the model wants 8
    records = [Consumed(codecs.request.encode(r)) for r in (good[0], refused, good[1], short, good[2])]
    out = by_topic(asyncio.run(_stage(settings, codecs, models, hooks).process(batch_of(records))))
    assert [codecs.result.decode(r.value)["event_id"] for r in out[settings.topics.output]] == [
        g["event_id"] for g in good
    ]
    errors = [codecs.error.decode(r.value) for r in out[settings.topics.error]]
    assert [(e["stage"], e["error_code"], e["event_id"]) for e in errors] == [
        ("HOOK", "HOOK_FAILED", refused["event_id"]),
        ("INFERENCE", "BAD_SHAPE", short["event_id"]),
    ]
    letters = out[settings.topics.dead_letter]
    assert [r.value for r in letters] == [records[1].value_, records[3].value_]
    assert read_context(letters[0].headers)["exception.class"] == "RuntimeError"
    assert read_context(letters[1].headers)["model"] == "tiny"
