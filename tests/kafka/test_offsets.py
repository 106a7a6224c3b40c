"""The commit rule: only offsets below which every output is acknowledged; never past a failure."""

from __future__ import annotations

import gc
import threading
import weakref

from pipeline.kafka.offsets import OffsetTracker

A = ("t", 0)
B = ("t", 1)


def _complete(tracker: OffsetTracker, ticket, outputs: int = 1) -> None:  # type: ignore[no-untyped-def]
    tracker.add_pending(ticket, outputs)
    tracker.seal(ticket)
    for _ in range(outputs):
        tracker.settle(ticket)


def test_commits_only_the_acknowledged_prefix_in_order() -> None:
    tracker = OffsetTracker()
    first = tracker.open({A: (0, 9), B: (0, 4)})
    second = tracker.open({A: (10, 19)})
    tracker.add_pending(second, 2)
    tracker.seal(second)
    tracker.settle(second)
    tracker.settle(second)
    assert tracker.take_commits() == {}  # the second batch is done but the first is not
    tracker.add_pending(first, 3)
    tracker.seal(first)
    tracker.settle(first)
    tracker.settle(first)
    assert tracker.take_commits() == {}  # one output still unacknowledged
    tracker.settle(first)
    assert tracker.take_commits() == {A: 20, B: 5}
    assert tracker.take_commits() == {}


def test_unsealed_batch_is_not_committed_even_with_no_pending_outputs() -> None:
    tracker = OffsetTracker()
    ticket = tracker.open({A: (0, 0)})
    tracker.add_pending(ticket)
    tracker.settle(ticket)
    assert tracker.take_commits() == {}
    tracker.seal(ticket)
    assert tracker.take_commits() == {A: 1}


def test_a_failed_batch_blocks_commits_and_rewinds_to_its_first_offset() -> None:
    tracker = OffsetTracker()
    ok = tracker.open({A: (0, 9)})
    bad = tracker.open({A: (10, 19), B: (0, 3)})
    later = tracker.open({A: (20, 29)})
    _complete(tracker, ok)
    tracker.add_pending(bad, 1)
    tracker.seal(bad)
    tracker.settle(bad, ok=False, error=RuntimeError("lost"))
    _complete(tracker, later)
    assert tracker.take_commits() == {A: 10}
    failures = tracker.take_failures()
    assert failures == [bad] and isinstance(bad.error, RuntimeError)
    assert tracker.rewind_point(bad.ranges) == {A: 10, B: 0}
    assert not later.live and not bad.live
    assert tracker.take_commits() == {}
    again = tracker.open({A: (10, 19)})
    _complete(tracker, again)
    assert tracker.take_commits() == {A: 20}


def test_wait_idle_returns_when_in_flight_batches_finish() -> None:
    tracker = OffsetTracker()
    ticket = tracker.open({A: (0, 4)})
    assert not tracker.wait_idle([A], 0.05)
    assert tracker.wait_idle([B], 0.05)
    timer = threading.Timer(0.1, _complete, args=(tracker, ticket))
    timer.start()
    assert tracker.wait_idle([A], 5)
    timer.join()


def test_forget_and_discard_drop_without_committing() -> None:
    tracker = OffsetTracker()
    ticket = tracker.open({A: (0, 4)})
    tracker.forget([A])
    _complete(tracker, ticket)
    assert tracker.take_commits() == {}
    dropped = tracker.open({B: (0, 4)})
    tracker.discard(dropped)
    assert tracker.wait_idle([B], 0.01)
    assert tracker.in_flight([A, B]) == 0


def test_rewind_spreads_to_partitions_of_dropped_batches() -> None:
    tracker = OffsetTracker()
    a_only = tracker.open({A: (0, 9)})
    both = tracker.open({A: (10, 19), B: (0, 9)})
    b_later = tracker.open({B: (10, 19)})
    tracker.fail(a_only, RuntimeError("x"))
    # B must rewind too: `both` is dropped, and B's later batch may not commit past it
    assert tracker.rewind_point([A]) == {A: 0, B: 0}
    assert not both.live and not b_later.live
    _complete(tracker, b_later)
    assert tracker.take_commits() == {}


def test_forget_keeps_batches_that_also_hold_kept_partitions() -> None:
    tracker = OffsetTracker()
    both = tracker.open({A: (0, 9), B: (0, 9)})
    tracker.forget([A])
    assert both.live
    _complete(tracker, both)
    assert tracker.take_commits() == {B: 10}


def test_a_done_batch_is_freed_by_reference_counting_alone() -> None:
    """The writer's delivery callback refers back to its ticket. Once the batch is done, neither is needed,
    and the pair (with the outputs and, through them, the source records) must not wait for the cyclic
    collector: under a backlog that held some 50,000 outputs and source records per role."""
    tracker = OffsetTracker()
    ticket = tracker.open({A: (0, 9)})

    class Callback:  # what the writer keeps per ticket: a callable that refers back to it
        def __init__(self, ticket: object) -> None:
            self.ticket = ticket

    ticket.delivery = Callback(ticket)
    ticket.outputs = [object() for _ in range(10)]
    freed = weakref.ref(ticket)
    gc.disable()
    try:
        _complete(tracker, ticket, outputs=10)
        assert ticket.delivery is None and ticket.outputs is None
        del ticket
        assert freed() is None
    finally:
        gc.enable()
    assert tracker.take_commits() == {A: 10}


def test_an_unfinished_batch_keeps_its_outputs() -> None:
    """A refused record is looked up among its batch's outputs until the last delivery report is in."""
    tracker = OffsetTracker()
    ticket = tracker.open({A: (0, 9)})
    ticket.outputs = ["a", "b"]
    tracker.add_pending(ticket, 2)
    tracker.seal(ticket)
    tracker.settle(ticket)
    assert ticket.outputs == ["a", "b"]
    tracker.settle(ticket)
    assert ticket.outputs is None
