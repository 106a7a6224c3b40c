"""Policies kept apart from I/O: batching (size, deadline, model-paced items) and retry backoff."""

from __future__ import annotations

import random

import pytest

from pipeline.kafka.batching import BatchPolicy, ModelPaced
from pipeline.kafka.retry import RetryPolicy


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


def test_a_batch_past_its_deadline_waits_for_room_in_the_agents_queue_not_behind_another() -> None:
    closes = BatchPolicy(max_events=32, max_wait_ms=20).closes
    assert closes(remaining_s=0.01, agent_idle=True, waiting=0)  # an idle agent takes it at once
    assert not closes(remaining_s=0.01, agent_idle=False, waiting=0)  # a busy one: the batch fills meanwhile
    assert closes(remaining_s=0.0, agent_idle=False, waiting=0)  # past W, queued behind the batch in hand
    # past W with a batch already waiting: it would wait behind that one too, so it keeps taking records
    assert not closes(remaining_s=0.0, agent_idle=False, waiting=1)
    assert closes(remaining_s=0.0, agent_idle=True, waiting=0)


@pytest.mark.parametrize(
    ("typical_s", "expected"),
    [
        (float("inf"), 32),  # nothing ran yet: one model batch per item
        (0.5, 32),  # a slow model: one model batch per item, the priority lane never waits long
        (0.004, 32 * 5),  # five batches fit in the 20 ms budget
        (0.0001, 32 * 15),  # a tiny model: capped at the item's most events (480 // 32 batches)
    ],
)
def test_inference_items_hold_as_many_model_batches_as_fit_in_the_budget(typical_s: float, expected: int) -> None:
    size = ModelPaced(model_batch=32, budget_s=0.02, max_events=480, typical_s=lambda: typical_s)
    assert size() == expected
    assert BatchPolicy(32, 20, size=size).limit() == expected


def test_retry_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_delay_s=0.5, jitter=0.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert policy.should_retry(3) and not policy.should_retry(4)
    jittered = RetryPolicy(base_delay_s=1.0, max_delay_s=10, jitter=0.2)
    delays = {round(jittered.delay_s(1, random.Random(seed)), 6) for seed in range(20)}
    assert len(delays) > 1 and all(0.8 <= d <= 1.2 for d in delays)
