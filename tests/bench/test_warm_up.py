"""Unit: when the bench takes a freshly started broker to be warm (``bench.main.settled``)."""

from __future__ import annotations

from bench.main import WARM_SETTLED, settled


def test_one_drain_says_nothing_yet() -> None:
    assert not settled([]) and not settled([12.0])


def test_a_cost_still_falling_is_not_settled() -> None:
    # the rest of the host's CPU per event over throwaway drains on a broker just started
    assert not settled([39.0, 23.0])
    assert not settled([39.0, 23.0, 17.0])


def test_two_drains_within_the_margin_are() -> None:
    assert settled([39.0, 23.0, 17.0, 16.0])
    assert settled([10.0, 10.0 * (1 + WARM_SETTLED)])
    assert not settled([10.0, 10.0 * (1 + 2 * WARM_SETTLED)])
