"""Policies kept apart from I/O: batching deadlines, retry backoff, dead-letter headers, hooks."""

from __future__ import annotations

import random

import pytest

from pipeline.processors.batch import BatchPolicy
from pipeline.processors.deadletter import (
    PREFIX,
    DeadLetterContext,
    dead_letter_headers,
    describe_exception,
    header_value,
)
from pipeline.processors.hooks import HookConfigError, HookFailed, HookRegistry, load_hook
from pipeline.processors.retry import RetryPolicy


def test_batch_closes_at_size_or_deadline() -> None:
    policy = BatchPolicy(max_events=4, max_wait_ms=50)
    assert policy.remaining_s(None, 0, 10.0) == pytest.approx(0.05)
    assert policy.remaining_s(10.0, 1, 10.02) == pytest.approx(0.03)
    assert policy.remaining_s(10.0, 1, 10.2) == 0.0
    assert policy.remaining_s(10.0, 4, 10.0) == 0.0
    with pytest.raises(ValueError):
        BatchPolicy(0, 10)
    # the agent's size hint overrides N
    assert policy.remaining_s(10.0, 4, 10.0, max_events=8) == pytest.approx(0.05)
    assert policy.remaining_s(10.0, 8, 10.0, max_events=8) == 0.0


@pytest.mark.parametrize(
    ("typical_s", "expected"),
    [
        (float("inf"), 32),  # nothing ran yet: one model batch per item
        (0.5, 32),  # a slow model: one model batch per item, the priority lane never waits long
        (0.004, 32 * 5),  # five batches fit in the 20 ms budget
        (0.0001, 32 * 15),  # a tiny model: capped at the input batch size (500 // 32 batches)
    ],
)
def test_inference_items_hold_as_many_model_batches_as_fit_in_the_budget(typical_s: float, expected: int) -> None:
    from types import SimpleNamespace
    from typing import Any

    from pipeline.processors.inference_stage import InferenceStage

    none: Any = None
    models: Any = SimpleNamespace(typical_batch_s=typical_s)
    stage = InferenceStage(
        none, models, none, none, none, "out", "w",
        batch_size=32, item_budget_s=0.02, max_item_batches=500 // 32,
    )  # fmt: skip
    assert stage.item_size() == expected


def test_retry_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_delay_s=0.5, jitter=0.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert policy.should_retry(3) and not policy.should_retry(4)
    jittered = RetryPolicy(base_delay_s=1.0, max_delay_s=10, jitter=0.2)
    delays = {round(jittered.delay_s(1, random.Random(seed)), 6) for seed in range(20)}
    assert len(delays) > 1 and all(0.8 <= d <= 1.2 for d in delays)


def test_dead_letter_headers_keep_the_original_and_add_context() -> None:
    try:
        raise ValueError("bad tensor")
    except ValueError as exc:
        cls, message, stack = describe_exception(exc)
    ctx = DeadLetterContext(
        topic="pipeline.input",
        partition=3,
        offset=42,
        timestamp=1700000000000,
        group="g.input",
        stage="VALIDATE",
        error_code="BAD_SHAPE",
        attempts=1,
        exception_class=cls,
        exception_message=message,
        stacktrace=stack,
        event_id="e-1",
    )
    original = [("traceparent", b"00-abc-def-01"), (PREFIX + "stage", b"OLD")]
    headers = dead_letter_headers(original, ctx)
    assert headers[0] == ("traceparent", b"00-abc-def-01")
    assert header_value(headers, PREFIX + "stage") == "VALIDATE"
    assert [k for k, _ in headers].count(PREFIX + "stage") == 1
    assert header_value(headers, PREFIX + "partition") == "3"
    assert header_value(headers, PREFIX + "offset") == "42"
    assert header_value(headers, PREFIX + "exception.class") == "ValueError"
    assert "bad tensor" in (header_value(headers, PREFIX + "exception.stacktrace") or "")
    assert header_value(headers, PREFIX + "model") is None  # absent fields are left out


def _upper(request: dict) -> dict:  # type: ignore[type-arg]
    return {**request, "text": request["text"].upper()}


def _boom(request: dict) -> None:  # type: ignore[type-arg]
    raise RuntimeError("hook exploded")


def test_hooks_load_by_dotted_path_time_and_wrap_failures() -> None:
    timings: list[tuple[str, str, float]] = []
    registry = HookRegistry.from_paths(pre=[f"{__name__}:_upper"], observer=lambda k, n, s: timings.append((k, n, s)))
    assert registry.run_pre({"text": "hi"}) == {"text": "HI"}
    assert timings and timings[0][0] == "pre_process" and timings[0][2] >= 0
    failing = HookRegistry.from_paths(pre=[f"{__name__}._boom"])
    with pytest.raises(HookFailed, match="hook exploded"):
        failing.run_pre({"text": "x"})
    with pytest.raises(HookConfigError):
        load_hook("no_such_module_xyz:fn")
    with pytest.raises(HookConfigError):
        load_hook(f"{__name__}:missing")
