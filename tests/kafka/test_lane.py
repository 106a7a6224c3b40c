"""The priority lane's rule, without a broker: when the bulk must be held."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from pipeline.kafka.lane import PriorityLane


class _Record:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic

    def error(self) -> None:
        return None


class _Positions:
    """What the lane asks a consumer while the bulk is held: positions and end offsets."""

    def __init__(self, position: int, high: int) -> None:
        self.position_, self.high = position, high

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.position_) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, self.high


def test_the_bulk_is_held_while_the_lane_has_records_and_released_when_the_lane_is_gone() -> None:
    lane = PriorityLane(["lane"])
    assigned = {("lane", 0), ("bulk", 0), ("bulk", 1)}
    consumer: Any = _Positions(position=5, high=9)
    assert lane.busy(consumer, [_Record("bulk")], assigned, held=False) is False
    assert lane.busy(consumer, [_Record("lane"), _Record("bulk")], assigned, held=False) is True
    assert lane.pauses == 1
    assert lane.busy(consumer, [], assigned, held=True) is True  # records left on the lane: keep holding
    drained: Any = _Positions(position=9, high=9)
    assert lane.busy(drained, [], assigned, held=True) is False  # the lane is drained: release the bulk
    # the lane's partitions went to another worker while the bulk was held: release it at once
    assert lane.busy(consumer, [], {("bulk", 0), ("bulk", 1)}, held=True) is False
    assert PriorityLane([]).busy(consumer, [_Record("lane")], assigned, held=False) is False
