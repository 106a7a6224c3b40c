"""The priority lane: while the lane's partitions have records, the bulk partitions are held.

The inference reader subscribes to the bulk topic and the lane in one consumer. A lane record in a poll
marks the lane busy; the reader then holds the bulk partitions (pauses them and drops the records already
fetched for them, which are fetched again on resume), so the lane's records go first. While the bulk is
held, positions and watermarks tell when the lane is drained. Order within a partition never changes, and
when the lane's partitions go to another worker the bulk is released at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from confluent_kafka import OFFSET_INVALID, Consumer, Message, TopicPartition

TP = tuple[str, int]


class PriorityLane:
    def __init__(self, priority_topics: Iterable[str]) -> None:
        self.topics = frozenset(priority_topics)
        self.pauses = 0  # how many times the lane held the bulk

    def __bool__(self) -> bool:
        return bool(self.topics)

    def busy(self, consumer: Consumer, messages: Sequence[Message], assigned: set[TP], held: bool) -> bool:
        """After each poll: whether the bulk must be held (``held``: whether it is now).

        Cheap on the common path: the assignment is the one the rebalance callbacks track (no client call
        per poll), and positions and watermarks are asked for only while the bulk is held.
        """
        lane = [tp for tp in assigned if tp[0] in self.topics]
        if not lane or len(lane) == len(assigned):
            return False
        priority = self.topics
        if any(m.topic() in priority and m.error() is None for m in messages):
            if not held:
                self.pauses += 1
            return True
        return held and self._has_records(consumer, lane)

    def _has_records(self, consumer: Consumer, lane: list[TP]) -> bool:
        lane_tps = [TopicPartition(t, p) for t, p in lane]
        for tp, pos in zip(lane_tps, consumer.position(lane_tps), strict=True):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            position = pos.offset
            if high >= 0 and position != OFFSET_INVALID and position >= 0 and high > position:
                return True
        return False
