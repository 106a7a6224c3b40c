"""The inference stage: records in, results (or error events and dead letters) out, with the real tiny
model and no broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.model.breaker import CircuitBreaker
from pipeline.model.errors import ModelUnavailable
from pipeline.model.outcome import Success
from pipeline.model.service import ModelService
from pipeline.observability.metrics import Metrics
from pipeline.serde import Codecs, ErrorCode, EventCodec, Failure, Stage, build_request
from pipeline.serde.deadletter import read_context
from pipeline.stages.hooks import HookRegistry
from pipeline.stages.inference import InferenceStage
from tests.stages.conftest import Consumed, batch_of, by_topic, router


def refuse_tagged(request: dict[str, Any]) -> None:
    if (request.get("attributes") or {}).get("refuse"):
        raise RuntimeError("refused on purpose")


def stall_tagged(request: dict[str, Any]) -> None:
    if (request.get("attributes") or {}).get("stall"):
        time.sleep(5)


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
        CircuitBreaker("tiny", models.probe),
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


def tag_result(request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any] | None:
    """Breaks the result of tagged requests the way a buggy post-process hook would."""
    tag = (request.get("attributes") or {}).get("break")
    if tag == "type":
        return {**result, "batch_size": "not a number"}
    if tag == "size":
        return {**result, "worker_id": "w" * 5000}
    return None


class FlakyModels:
    """The real tiny model behind a switch: down (every batch fails and so does the probe), or raising for
    events whose first input is 13 (a runtime error the model runtime does not isolate)."""

    def __init__(self, real: ModelService) -> None:
        self.real = real
        self.down = False
        self.down_after: int | None = None  # goes down by itself once it has answered this many events
        self.answered = 0
        self.answers_probe = True
        self.calls = 0

    @property
    def default_model(self) -> str:
        return self.real.default_model

    async def run_batch_async(self, items: Any) -> list[Any]:
        self.calls += 1
        if self.down_after is not None and self.answered >= self.down_after:
            self.down, self.down_after = True, None
        if self.down:
            return [
                Failure(Stage.INFERENCE, ErrorCode.INFERENCE_FAILED, "device lost", retryable=True, model="tiny")
                for _ in items
            ]
        for _, payload in items:
            x = np.frombuffer(payload["tensors"][0]["data"], dtype=np.float32)
            if x[0] == 13:
                raise RuntimeError("the runtime fell over")
        outcomes = await self.real.run_batch_async(items)
        self.answered += len(items)
        return outcomes

    def probe(self, name: str | None = None) -> bool:
        return self.answers_probe and not self.down


def _flaky_stage(settings: Settings, codecs: Codecs, models: Any, hooks: HookRegistry | None = None) -> InferenceStage:
    metrics = Metrics()
    hooks = hooks or HookRegistry()
    return InferenceStage(
        EventCodec.from_settings(settings, "request", validate=False),
        Codecs.from_settings(settings.model_copy(update={"max_message_bytes": 2000})).result,
        models,
        router(settings, codecs, metrics, hooks),
        settings.topics.output,
        "w1",
        metrics,
        CircuitBreaker("tiny", lambda: True, open_after=2, backoff_s=60),
        hooks=hooks,
        batch_size=8,
    )


def test_a_result_the_schema_refuses_or_too_large_fails_its_event_alone(
    settings: Settings, codecs: Codecs, models: ModelService
) -> None:
    hooks = HookRegistry.from_paths(post=[f"{__name__}:tag_result"])
    x = np.ones(8, np.float32)
    requests = [
        build_request(model="tiny", tensors={"x": x}),
        build_request(model="tiny", tensors={"x": x}, attributes={"break": "type"}),
        build_request(model="tiny", tensors={"x": x}),
        build_request(model="tiny", tensors={"x": x}, attributes={"break": "size"}),
    ]
    stage = _flaky_stage(settings, codecs, FlakyModels(models), hooks)
    out = by_topic(asyncio.run(stage.process(batch_of([Consumed(codecs.request.encode(r)) for r in requests]))))
    assert [codecs.result.decode(r.value)["event_id"] for r in out[settings.topics.output]] == [
        requests[0]["event_id"],
        requests[2]["event_id"],
    ]
    errors = [codecs.error.decode(r.value) for r in out[settings.topics.error]]
    assert [(e["stage"], e["error_code"], e["event_id"]) for e in errors] == [
        ("OUTPUT", "INVALID_DATUM", requests[1]["event_id"]),
        ("OUTPUT", "TOO_LARGE", requests[3]["event_id"]),
    ]
    assert "batch_size" in errors[0]["message"]
    assert len(out[settings.topics.dead_letter]) == 2


def test_a_runtime_error_is_narrowed_down_to_the_event_that_raises_it(
    settings: Settings, codecs: Codecs, models: ModelService
) -> None:
    xs = [np.full(8, v, np.float32) for v in (1, 2, 13, 4, 5, 6, 7, 8)]
    requests = [build_request(model="tiny", tensors={"x": x}) for x in xs]
    stage = _flaky_stage(settings, codecs, FlakyModels(models))
    out = by_topic(asyncio.run(stage.process(batch_of([Consumed(codecs.request.encode(r)) for r in requests]))))
    answered = [codecs.result.decode(r.value)["event_id"] for r in out[settings.topics.output]]
    assert answered == [r["event_id"] for i, r in enumerate(requests) if i != 2]  # each neighbour once
    (error,) = [codecs.error.decode(r.value) for r in out[settings.topics.error]]
    assert (error["stage"], error["error_code"], error["event_id"]) == (
        "INFERENCE",
        "INFERENCE_FAILED",
        requests[2]["event_id"],
    )
    assert "the runtime fell over" in error["message"]
    assert read_context(out[settings.topics.dead_letter][0].headers)["exception.class"] == "RuntimeError"


def test_a_model_that_is_down_dead_letters_nothing_and_opens_the_circuit(
    settings: Settings, codecs: Codecs, models: ModelService
) -> None:
    flaky = FlakyModels(models)
    flaky.down = True
    stage = _flaky_stage(settings, codecs, flaky)
    records = [Consumed(codecs.request.encode(build_request(model="tiny", tensors={"x": np.ones(8, np.float32)})))]
    for attempt in (1, 2):
        with pytest.raises(ModelUnavailable, match="device lost"):
            asyncio.run(stage.process(batch_of(records)))
        assert stage.breaker.is_open() == (attempt == 2)
    stage.breaker.close()


def test_a_whole_batch_failing_while_the_model_answers_its_probe_is_the_events_fault(
    settings: Settings, codecs: Codecs, models: ModelService
) -> None:
    flaky = FlakyModels(models)
    flaky.down = True
    flaky.probe = lambda name=None: True  # type: ignore[method-assign]
    stage = _flaky_stage(settings, codecs, flaky)
    records = [Consumed(codecs.request.encode(build_request(model="tiny", tensors={"x": np.ones(8, np.float32)})))]
    out = by_topic(asyncio.run(stage.process(batch_of(records))))
    (error,) = [codecs.error.decode(r.value) for r in out[settings.topics.error]]
    assert (error["error_code"], error["retryable"]) == ("INFERENCE_FAILED", False)
    assert not stage.breaker.is_open()


def test_a_hook_past_its_deadline_fails_its_event_as_timeout(
    settings: Settings, codecs: Codecs, models: ModelService
) -> None:
    hooks = HookRegistry.from_paths(pre=[f"{__name__}:stall_tagged"], deadline_s=0.1)
    x = np.ones(8, np.float32)
    good = build_request(model="tiny", tensors={"x": x})
    stalled = build_request(model="tiny", tensors={"x": x}, attributes={"stall": "1"})
    records = [Consumed(codecs.request.encode(r)) for r in (stalled, good)]
    started = time.perf_counter()
    out = by_topic(asyncio.run(_stage(settings, codecs, models, hooks).process(batch_of(records))))
    assert time.perf_counter() - started < 2.0  # the hook was stopped, not waited for
    assert [codecs.result.decode(r.value)["event_id"] for r in out[settings.topics.output]] == [good["event_id"]]
    (error,) = [codecs.error.decode(r.value) for r in out[settings.topics.error]]
    assert (error["stage"], error["error_code"], error["event_id"], error["retryable"]) == (
        "HOOK",
        "TIMEOUT",
        stalled["event_id"],
        True,
    )
    (letter,) = out[settings.topics.dead_letter]
    assert read_context(letter.headers)["exception.class"].endswith("HookTimeout")


def test_stage_times_are_one_per_batch_and_the_models_one_per_model_batch(
    settings: Settings, codecs: Codecs, models: ModelService
) -> None:
    """Ten events in model batches of four: the model is timed three times, decode and encode once each,
    as ``pipeline_stage_seconds`` says (the time of a batch's stage)."""
    stage = _stage(settings, codecs, models)
    requests = [build_request(model="tiny", tensors={"x": np.ones(8, dtype=np.float32)}) for _ in range(10)]
    out = asyncio.run(stage.process(batch_of([Consumed(codecs.request.encode(r)) for r in requests])))
    assert len(out) == 10 and {r.topic for r in out} == {settings.topics.output}
    counts = {
        (s.name, s.labels.get("stage") or s.labels.get("model")): s.value
        for family in stage.metrics.registry.collect()
        for s in family.samples
        if s.name in ("pipeline_stage_seconds_count", "pipeline_model_inference_seconds_count")
    }
    assert counts == {
        ("pipeline_stage_seconds_count", "decode"): 1.0,
        ("pipeline_stage_seconds_count", "encode"): 1.0,
        ("pipeline_model_inference_seconds_count", "tiny"): 3.0,
    }
