"""Consumer lag per partition, read from the broker: high watermark minus the group's committed offset.

It runs in a thread of its own with its own clients, so it never touches the hot path's consumers, and it
reports what the broker sees: lag goes up while a worker is down and back to 0 once it has caught up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config
from pipeline.observability.metrics import Metrics

log = logging.getLogger("pipeline.lag")


def group_lag(
    settings: Settings, group: str, topics: Sequence[str], timeout_s: float = 5.0, consumer: Consumer | None = None
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> lag for ``group`` (a partition never committed counts from its low watermark).

    ``consumer``: one of ``group`` to ask with (it is left open); else one is made and closed here.
    """
    own = consumer is None
    if consumer is None:
        consumer = Consumer(consumer_config(settings, group))  # committed() needs the group; it never subscribes
    try:
        md = consumer.list_topics(timeout=timeout_s)
        tps = [TopicPartition(t, p) for t in topics if t in md.topics for p in md.topics[t].partitions]
        committed = consumer.committed(tps, timeout=timeout_s) if tps else []
        lag: dict[tuple[str, int], int] = {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout_s)
            start = tp.offset if tp.offset >= 0 else low
            lag[(tp.topic, tp.partition)] = max(0, high - start)
        return lag
    finally:
        if own:
            consumer.close()


class LagMonitor(threading.Thread):
    """Every ``interval_s``, the lag of each group, as the ``pipeline_consumer_lag`` gauge.

    One consumer per group for the monitor's life: making and closing one per round cost the worker a
    stall of tens of milliseconds each time (closing a client holds the GIL while its threads stop).
    """

    def __init__(
        self, settings: Settings, groups: dict[str, Sequence[str]], metrics: Metrics, interval_s: float = 5.0
    ) -> None:
        super().__init__(name="lag-monitor", daemon=True)
        self.settings = settings
        self.metrics = metrics
        self.groups = groups
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self.latest: dict[str, dict[tuple[str, int], int]] = {}

    def total(self) -> int:
        return sum(sum(v.values()) for v in self.latest.values())

    def run(self) -> None:
        consumers: dict[str, Consumer] = {}
        try:
            while not self._stop_event.is_set():
                for group, topics in self.groups.items():
                    try:
                        consumer = consumers.get(group)
                        if consumer is None:
                            consumer = consumers[group] = Consumer(consumer_config(self.settings, group))
                        lag = group_lag(self.settings, group, topics, consumer=consumer)
                    except KafkaException as exc:
                        log.debug("lag of %s unavailable: %s", group, exc)
                        continue
                    self.latest[group] = lag
                    for (topic, partition), value in lag.items():
                        self.metrics.consumer_lag.labels(group, topic, str(partition)).set(value)
                self._stop_event.wait(self.interval_s)
        finally:
            for consumer in consumers.values():
                consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
