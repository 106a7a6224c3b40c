"""Unit: assigned partitions the client never starts reading (``pipeline.kafka.starts``), and how the role
reports them (``pipeline.observability.health``). No broker: a stand-in consumer with the two calls used."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition

from pipeline.kafka.starts import Starts
from pipeline.observability.health import Health, stalled
from pipeline.observability.metrics import Metrics

A, B = ("src", 0), ("src", 1)


class _Consumer:
    """Cached watermarks for the partitions fetched once; records the assignment calls."""

    def __init__(self) -> None:
        self.fetched: set[tuple[str, int]] = set()
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached  # the check never asks the broker
        return (0, 5) if (tp.topic, tp.partition) in self.fetched else (-1001, -1001)

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("unassign", [(p.topic, p.partition) for p in partitions]))

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        assert all(p.offset < 0 for p in partitions)  # no offset given: the committed one is asked for again
        self.calls.append(("assign", [(p.topic, p.partition) for p in partitions]))


def _starts(after_s: float = 5.0) -> tuple[Starts, Health, Metrics]:
    metrics = Metrics()
    health = Health(metrics, ["input"])
    return Starts("input", metrics, health, after_s), health, metrics


def test_a_partition_fetched_once_is_forgotten_and_one_never_fetched_is_assigned_again() -> None:
    starts, health, metrics = _starts()
    consumer = _Consumer()
    starts.assigned([A, B], now=100.0)
    consumer.fetched.add(A)
    assert starts.check(consumer, set(), True, now=101.0) == []  # B has waited 1 s of 5
    assert health.checks()["fetching"]
    assert starts.check(consumer, set(), True, now=105.5) == [B]
    assert consumer.calls == [("unassign", [B]), ("assign", [B])]
    assert not health.checks()["fetching"] and not health.ready
    assert metrics.partitions_reassigned.labels("input")._value.get() == 1
    # still not started: assigned again only after another full wait, and reported meanwhile
    assert starts.check(consumer, set(), True, now=107.0) == []
    consumer.fetched.add(B)
    assert starts.check(consumer, set(), True, now=108.5) == []
    assert health.checks()["fetching"]
    assert len(consumer.calls) == 2


def test_time_held_on_purpose_or_without_the_broker_does_not_count() -> None:
    starts, health, _ = _starts(after_s=5.0)
    consumer = _Consumer()
    starts.assigned([A], now=100.0)
    for now in (101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0):
        assert starts.check(consumer, {A}, True, now=now) == []  # paused: nothing is fetched
    for now in (108.0, 109.0, 110.0, 111.0):
        assert starts.check(consumer, set(), False, now=now) == []  # the broker is unreachable
    assert starts.check(consumer, set(), True, now=112.0) == []
    assert starts.check(consumer, set(), True, now=116.5) == [A]
    assert not health.checks()["fetching"]


def test_a_released_partition_is_no_longer_reported() -> None:
    starts, health, _ = _starts(after_s=1.0)
    consumer = _Consumer()
    starts.assigned([A], now=100.0)
    assert starts.check(consumer, set(), True, now=101.5) == [A]
    assert not health.checks()["fetching"]
    starts.released([A])
    assert health.checks()["fetching"]
    assert starts.check(consumer, set(), True, now=110.0) == []


def test_a_partition_that_never_starts_fails_liveness_after_the_stall_timeout() -> None:
    metrics = Metrics()
    health = Health(metrics, ["input", "inference"], stall_timeout_s=60.0)
    assert health.liveness() == {"input": True, "inference": True}
    health.unstarted("input", time.time() - 30)
    assert health.liveness() == {"input": True, "inference": True}  # reported (not ready), still alive
    assert not health.checks()["fetching"]
    health.unstarted("input", time.time() - 61)
    assert health.liveness() == {"input": False, "inference": True}
    assert metrics.unstarted_since.labels("input")._value.get() > 0
    health.unstarted("input", None)
    assert health.liveness()["input"] and health.checks()["fetching"]
    assert metrics.unstarted_since.labels("input")._value.get() == 0
    # the rule the supervisor applies to the gauges of each role process
    assert stalled(time.time(), False, False, time.time(), 60.0, unstarted_since=time.time() - 61)
    assert not stalled(time.time(), False, False, time.time(), 60.0, unstarted_since=0.0)
