"""Unit: when the bench takes a freshly started broker to be warm (``bench.main.settled``)."""

from __future__ import annotations

from bench.main import WARM_SETTLED, settled


def test_fewer_than_six_drains_say_nothing_yet() -> None:
    assert not any(settled([12.0] * n) for n in range(6))


def test_a_cost_still_falling_is_not_settled() -> None:
    # the broker's µs per event over throwaway pairs (pipeline + raw two-hop) on a broker just started
    assert not settled([61.6, 42.3, 35.5, 29.3, 24.8, 22.3, 19.4, 25.5])


def test_a_cost_that_only_moves_with_the_noise_is() -> None:
    # one figure moves by a quarter, the medians by 5%
    assert settled([26.6, 20.7, 18.8, 16.6, 16.6, 16.8, 12.1, 15.9, 15.8])
    at_margin, below = 10.0 * (1 - WARM_SETTLED), 10.0 * (1 - 2 * WARM_SETTLED)
    assert settled([10.0, 10.0, 10.0, at_margin, 30.0, at_margin])
    assert not settled([10.0, 10.0, 10.0, below, 30.0, below])
