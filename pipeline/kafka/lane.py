"""The priority lane: while the lane's partitions have records, the bulk partitions are paused.

The inference reader subscribes to the bulk topic and the lane in one consumer. A lane record in a poll
marks the lane busy; the bulk partitions are then paused and the records already fetched for them are
dropped from the client's queue (a seek to their own position: they are fetched again on resume), so the
lane's records go first. While paused, positions and watermarks tell when the lane is drained. Order
within a partition never changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from confluent_kafka import OFFSET_INVALID, Consumer, Message, TopicPartition

TP = tuple[str, int]


class PriorityLane:
    def __init__(self, priority_topics: Iterable[str]) -> None:
        self.topics = frozenset(priority_topics)
        self.bulk_paused = False
        self.pauses = 0
        self._lanes_of: frozenset[TP] | None = None
        self._lanes_cache: tuple[list[TP], list[TP]] = ([], [])

    def __bool__(self) -> bool:
        return bool(self.topics)

    def steer(self, consumer: Consumer, messages: Sequence[Message], assigned: set[TP]) -> None:
        """After each poll: pause the bulk when the lane has records, resume it once the lane is drained.

        Cheap on the common path: the assignment is the one the rebalance callbacks track (no client call
        per poll), and positions and watermarks are asked for only while the bulk is paused.
        """
        lane, bulk = self._lanes(assigned)
        if not lane or not bulk:
            return
        priority = self.topics
        lane_busy = any(m.topic() in priority and m.error() is None for m in messages)
        if not lane_busy and self.bulk_paused:
            lane_busy = self._lane_has_records(consumer, lane)
        if lane_busy and not self.bulk_paused:
            bulk_tps = [TopicPartition(t, p) for t, p in bulk]
            consumer.pause(bulk_tps)
            for tp in consumer.position(bulk_tps):
                if tp.offset >= 0:
                    consumer.seek(tp)
            self.bulk_paused = True
            self.pauses += 1
        elif not lane_busy and self.bulk_paused:
            consumer.resume([TopicPartition(t, p) for t, p in bulk])
            self.bulk_paused = False

    def on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        """Bulk partitions assigned while the bulk is paused start paused."""
        if self.bulk_paused:
            bulk = [p for p in partitions if p.topic not in self.topics]
            if bulk:
                consumer.pause(bulk)

    def _lane_has_records(self, consumer: Consumer, lane: list[TP]) -> bool:
        lane_tps = [TopicPartition(t, p) for t, p in lane]
        for tp, pos in zip(lane_tps, consumer.position(lane_tps), strict=True):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            position = pos.offset
            if high >= 0 and position != OFFSET_INVALID and position >= 0 and high > position:
                return True
        return False

    def _lanes(self, assigned: set[TP]) -> tuple[list[TP], list[TP]]:
        """The assigned lane and bulk partitions, recomputed only when the assignment changed."""
        if self._lanes_of is None or self._lanes_of != assigned:
            lane = sorted(tp for tp in assigned if tp[0] in self.topics)
            bulk = sorted(tp for tp in assigned if tp[0] not in self.topics)
            self._lanes_of, self._lanes_cache = frozenset(assigned), (lane, bulk)
        return self._lanes_cache
