"""Model batch deadlines and the probe, against a model that really takes long (tests/slow_model.py) in the
real ONNX Runtime: a batch past its deadline is cancelled and its unanswered events time out; the runner
goes on serving; the per-model deadline wins over the setting; warm-up is never cut; the probe says
whether the model answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.model import Failure, ModelInput, ModelRunner, ModelService, Registry, Success, load_registry, tiny
from pipeline.serde import ErrorCode, Stage
from tests import slow_model

SLOW_S = 2.0  # what a slow event asks for, at the least (about 6x that on the 2-core host)


def x_of(value: float) -> ModelInput:
    return ModelInput(tensors={"x": np.full(8, value, dtype=np.float32)})


def slow_event() -> ModelInput:
    return ModelInput(tensors={"x": slow_model.x_asking(slow_model.iterations_for(SLOW_S))})


def assert_timed_out(outcome: object, deadline_ms: int) -> None:
    assert isinstance(outcome, Failure), outcome
    assert (outcome.stage, outcome.code, outcome.retryable, outcome.model) == (
        Stage.INFERENCE,
        ErrorCode.TIMEOUT,
        True,
        "slow",
    )
    assert "'slow'" in outcome.message and f"{deadline_ms} ms" in outcome.message


def assert_answered(outcome: object, x: ModelInput) -> None:
    assert isinstance(outcome, Success), outcome
    assert x.tensors is not None
    np.testing.assert_allclose(outcome.outputs["y"], tiny.reference(x.tensors["x"][None])[0], rtol=1e-5, atol=1e-6)


@pytest.fixture
def slow_registry(tmp_path: Path) -> Registry:
    return load_registry(slow_model.write(tmp_path, batch_timeout_ms=300, max_batch_size=2))


@pytest.fixture
def slow_runner(slow_registry: Registry, tmp_path: Path) -> Iterator[ModelRunner]:
    runner = ModelRunner(slow_registry.get("slow"), tmp_path, device="cpu", intra_op_threads=1)
    yield runner
    runner.close()


def test_the_slow_model_answers_like_tiny_and_waits_as_asked(slow_runner: ModelRunner) -> None:
    ordinary = [x_of(v) for v in (-2.0, 0.5, 3.0)]
    for x, outcome in zip(ordinary, slow_runner.run_batch(ordinary), strict=True):
        assert_answered(outcome, x)
    asking = ModelInput(tensors={"x": slow_model.x_asking(slow_model.iterations_for(0.1))})
    started = time.perf_counter()
    (outcome,) = slow_runner.run_batch([asking])
    assert time.perf_counter() - started >= 0.1
    assert_answered(outcome, asking)


def test_a_slow_batch_is_cancelled_at_its_deadline_and_the_runner_goes_on(
    slow_runner: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = slow_runner.session.run
    runs: list[int] = []

    def counted(feeds: dict[str, np.ndarray], deadline: float | None) -> list[np.ndarray]:
        runs.append(len(feeds["x"]))
        return real(feeds, deadline)

    monkeypatch.setattr(slow_runner.session, "run", counted)
    batch = [slow_event(), x_of(1.0)]
    started = time.perf_counter()
    outcomes = slow_runner.run_batch(batch, deadline_s=0.3)
    took = time.perf_counter() - started
    assert 0.3 <= took < 1.5, f"{took:.2f} s for a deadline of 0.3 s against a run of {SLOW_S}+ s"
    for outcome in outcomes:
        assert_timed_out(outcome, 300)
    assert runs == [2]  # the terminated run was not bisected
    # the same runner (and session) answers a fast batch under the same deadline as before
    fast = [x_of(v) for v in (0.0, 1.5)]
    for x, outcome in zip(fast, slow_runner.run_batch(fast, deadline_s=0.3), strict=True):
        assert_answered(outcome, x)


def test_events_answered_before_the_deadline_keep_their_results(slow_runner: ModelRunner) -> None:
    # max_batch_size 2: [a, b] runs and answers, [slow, c] is cancelled, [d] never runs
    a, b, c, d = x_of(0.5), x_of(1.0), x_of(2.0), x_of(-1.0)
    started = time.perf_counter()
    outcomes = slow_runner.run_batch([a, b, slow_event(), c, d], deadline_s=0.3)
    assert time.perf_counter() - started < 1.5
    assert_answered(outcomes[0], a)
    assert_answered(outcomes[1], b)
    for outcome in outcomes[2:]:
        assert_timed_out(outcome, 300)


def test_run_batch_async_applies_the_deadline(slow_runner: ModelRunner) -> None:
    started = time.perf_counter()
    (outcome,) = asyncio.run(slow_runner.run_batch_async([slow_event()], deadline_s=0.3))
    assert time.perf_counter() - started < 1.5
    assert_timed_out(outcome, 300)


def test_the_models_own_deadline_wins_over_the_setting(slow_registry: Registry, tmp_path: Path) -> None:
    assert slow_registry.source is not None
    settings = Settings(
        models_file=slow_registry.source,
        model_cache=tmp_path,
        model="tiny",
        device="cpu",
        intra_op_threads=1,
        model_batch_timeout_ms=60_000,
    )
    service = ModelService.from_settings(settings)
    try:
        assert service.deadline_s("slow") == pytest.approx(0.3)  # models.toml: batch_timeout_ms = 300
        assert service.deadline_s("tiny") == pytest.approx(60.0)  # the setting
        assert service.deadline_s() == pytest.approx(60.0)
        fast = x_of(1.0)
        started = time.perf_counter()
        outcomes = service.run_batch([("slow", slow_event()), (None, fast), ("slow", x_of(2.0))])
        assert time.perf_counter() - started < 1.5  # 0.3 s, not the setting's 60 s
        assert_timed_out(outcomes[0], 300)
        assert_answered(outcomes[1], fast)  # tiny, the default model, in the same batch
        assert_timed_out(outcomes[2], 300)
    finally:
        service.close()


def test_a_zero_deadline_means_none(tmp_path: Path) -> None:
    registry = load_registry(slow_model.write(tmp_path, batch_timeout_ms=0))
    service = ModelService(
        registry, tmp_path, default_model="tiny", device="cpu", batch_timeout_ms=5_000, preload=False
    )
    try:
        assert service.deadline_s("slow") is None  # the model's 0 wins over the service's 5 s
        assert service.deadline_s("tiny") == pytest.approx(5.0)
    finally:
        service.close()
    assert ModelService(registry, tmp_path, default_model="tiny", preload=False).deadline_s("tiny") is None


def test_probe_says_whether_the_model_answers(tiny_runner: ModelRunner, slow_runner: ModelRunner) -> None:
    assert tiny_runner.probe(1.0) is True
    assert tiny_runner.probe(None) is True
    assert slow_runner.probe(0.3) is True  # the probe's zeros ask for no wait


def test_probe_is_false_for_a_model_that_does_not_answer_in_time(tmp_path: Path) -> None:
    # every event of this one waits (as a stuck model would); not warmed up, which would wait as well
    registry = load_registry(slow_model.write(tmp_path, floor_iterations=slow_model.iterations_for(SLOW_S)))
    runner = ModelRunner(registry.get("slow"), tmp_path, device="cpu", intra_op_threads=1, warm_up=False)
    try:
        started = time.perf_counter()
        assert runner.probe(0.2) is False
        assert time.perf_counter() - started < 1.5
    finally:
        runner.close()


def test_warm_up_is_not_cut_by_the_deadline_and_the_service_probe(tmp_path: Path) -> None:
    # every batch of this model takes longer than its 1 ms deadline, the warm-up's too
    models_file = slow_model.write(tmp_path, batch_timeout_ms=1, floor_iterations=slow_model.iterations_for(0.05))
    # loads and warms up the default model: a warm-up cut by the deadline would raise ModelError here
    service = ModelService(load_registry(models_file), tmp_path, default_model="slow", device="cpu", intra_op_threads=1)
    try:
        assert service.probe("slow") is False  # under its deadline it does not answer
        assert service.probe("tiny") is True
        assert service.probe("no-such-model") is False  # never raises for a model it cannot have
        (outcome,) = service.run_batch([(None, x_of(0.0))])
        assert_timed_out(outcome, 1)
    finally:
        service.close()


def test_a_text_batch_runs_under_its_deadline_too(minilm_runner: ModelRunner) -> None:
    texts = [ModelInput(text=f"sentence number {i} about deadlines and batches") for i in range(32)]
    assert all(isinstance(o, Success) for o in minilm_runner.run_batch(texts, deadline_s=30.0))
    # 32 texts take tens of milliseconds on a CPU: a 0.1 ms deadline stops them (or they never start)
    outcomes = minilm_runner.run_batch(texts, deadline_s=0.0001)
    assert all(isinstance(o, Failure) and o.code == ErrorCode.TIMEOUT and o.model == "minilm-l6" for o in outcomes)
    assert isinstance(minilm_runner.run_batch(texts[:1])[0], Success)
