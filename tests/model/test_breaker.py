"""The model's circuit breaker: K failed batches in a row open it; a probe the model answers closes it."""

from __future__ import annotations

import itertools
import threading
import time

from pipeline.model.breaker import BreakerState, CircuitBreaker


def test_opens_after_k_failures_in_a_row_and_closes_when_the_probe_answers() -> None:
    healthy = threading.Event()
    probes: list[float] = []
    changes: list[BreakerState] = []

    def probe() -> bool:
        probes.append(time.monotonic())
        return healthy.is_set()

    breaker = CircuitBreaker("m", probe, open_after=3, backoff_s=0.05, max_backoff_s=0.2, on_change=changes.append)
    breaker.failure()
    breaker.failure()
    breaker.success()  # one answered batch resets the count
    breaker.failure()
    breaker.failure()
    assert not breaker.is_open()
    breaker.failure()
    assert breaker.is_open() and changes == [BreakerState.OPEN]
    time.sleep(0.5)
    assert breaker.is_open() and len(probes) >= 2
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps[-1] >= gaps[0]  # the backoff grows while the model stays down
    healthy.set()
    deadline = time.monotonic() + 2
    while breaker.is_open() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not breaker.is_open() and changes == [BreakerState.OPEN, BreakerState.CLOSED]
    assert breaker.opened == 1


def test_a_probe_that_raises_counts_as_failed_and_close_stops_probing() -> None:
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        raise RuntimeError("device lost")

    breaker = CircuitBreaker("m", probe, open_after=1, backoff_s=0.02, max_backoff_s=0.02)
    breaker.failure()
    time.sleep(0.15)
    assert breaker.is_open() and calls
    breaker.close()
    time.sleep(0.05)
    seen = len(calls)
    time.sleep(0.1)
    assert len(calls) == seen
