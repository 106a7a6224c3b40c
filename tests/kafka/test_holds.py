"""Holds without a broker (unit tier): what a hold and its release ask of the client, in order. A release
resumes each partition and then seeks it once more to where it is read from: a resume alone changes no fetch
state, and the client's broker thread would fetch the partition only at its next wake-up (up to a second,
bench/README.md); the broker tier (tests/kafka/test_reader_writer.py, e2e) checks that nothing is lost or
read twice."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from pipeline.kafka.holds import Holds
from tests.kafka.fakes import Record

A, B = ("t", 0), ("t", 1)


class _Client:
    """Records pause, resume and seek calls; positions are given per partition (-1001: none yet)."""

    def __init__(self, positions: dict[tuple[str, int], int]) -> None:
        self.positions = positions
        self.calls: list[tuple[str, Any]] = []

    def pause(self, tps: list[TopicPartition]) -> None:
        self.calls.append(("pause", sorted((tp.topic, tp.partition) for tp in tps)))

    def resume(self, tps: list[TopicPartition]) -> None:
        self.calls.append(("resume", sorted((tp.topic, tp.partition) for tp in tps)))

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions[(tp.topic, tp.partition)]) for tp in tps]

    def seek(self, tp: TopicPartition) -> None:
        self.calls.append(("seek", (tp.topic, tp.partition, tp.offset)))


def test_a_release_resumes_then_seeks_each_partition_where_its_hold_left_it() -> None:
    reason: list[str | None] = ["the writer's backlog is full"]
    holds = Holds(gate=lambda: reason[0])
    client: Any = _Client({A: 12, B: 30})
    pending: list[Any] = [Record(*A, 9), Record(*A, 10)]  # read, not handed over: A is read again from 9
    assert holds.apply(client, {A, B}, pending) == []
    assert client.calls[0] == ("pause", [A, B])
    assert sorted(client.calls[1:]) == [("seek", ("t", 0, 9)), ("seek", ("t", 1, 30))]
    client.calls.clear()
    reason[0] = None
    holds.apply(client, {A, B}, [])
    assert client.calls[0] == ("resume", [A, B])
    assert sorted(client.calls[1:]) == [("seek", ("t", 0, 9)), ("seek", ("t", 1, 30))]
    client.calls.clear()
    holds.apply(client, {A, B}, [])
    assert client.calls == []  # nothing held, nothing asked


def test_a_rewinds_seek_while_held_is_the_one_the_release_repeats() -> None:
    reason: list[str | None] = ["the model's circuit is open"]
    holds = Holds(gate=lambda: reason[0])
    client: Any = _Client({A: 12, B: 30})
    holds.apply(client, {A, B}, [])
    holds.seek(client, TopicPartition(*A, 5))  # a failed batch is read again from 5
    client.calls.clear()
    reason[0] = None
    holds.apply(client, {A, B}, [])
    assert client.calls[0] == ("resume", [A, B])
    assert sorted(client.calls[1:]) == [("seek", ("t", 0, 5)), ("seek", ("t", 1, 30))]


def test_a_rewound_partition_keeps_its_rewind_when_it_is_held_for_the_backoff() -> None:
    holds = Holds()
    client: Any = _Client({A: -1001, B: 30})  # librdkafka forgets a partition's position at a seek
    holds.seek(client, TopicPartition(*A, 5))  # the rewind
    holds.back_off([A], float("inf"))
    client.calls.clear()
    holds.apply(client, {A, B}, [])
    assert client.calls == [("pause", [A])]  # the rewind's seek stands
    holds.until[A] = 0.0  # the backoff is over
    client.calls.clear()
    holds.apply(client, {A, B}, [])
    assert client.calls == [("resume", [A]), ("seek", ("t", 0, 5))]


def test_a_partition_never_read_is_only_resumed_and_a_revoked_one_is_forgotten() -> None:
    reason: list[str | None] = ["held"]
    holds = Holds(gate=lambda: reason[0])
    client: Any = _Client({A: -1001, B: 30})
    holds.apply(client, {A, B}, [])
    holds.release({B})  # revoked while held
    client.calls.clear()
    reason[0] = None
    holds.apply(client, {A}, [])
    assert client.calls == [("resume", [A])]
    assert holds.sought == {}
