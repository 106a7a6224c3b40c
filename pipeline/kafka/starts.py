"""Assigned partitions the client never starts reading: found, assigned again, and reported until they start.

After an assignment the client asks the group coordinator for each partition's committed offset, then
starts fetching from there. Some answers can leave a partition in between for good: a request-level error
from a coordinator that moved (a broker restarted), or an offset held back by a transaction that never
ends. The partition stays assigned and is never fetched, nothing is logged, and the worker's other
partitions flow, so no liveness rule built on progress sees it. Restarting the consumer is known to
recover it; assigning the partition again does the same with less: the client asks for its committed
offset anew.

A partition the client has fetched once has watermarks in its cache (an empty one too), so a partition
without them ``after_s`` after it was assigned has not started. Time it spends held on purpose (paused:
nothing is fetched) or with the broker unreachable does not count. Such a partition is assigned again, one
line is logged, and the role reports it (readiness check ``fetching``; liveness once it has stayed so for
the stall timeout, where a restart of the worker is what is left) until it has started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.kafka.offsets import TP
from pipeline.observability.health import Health
from pipeline.observability.metrics import Metrics

log = logging.getLogger("pipeline.reader")

# A legitimate wait ends well within this: the committed offset held by one of our own transactions, which
# commit every commit interval and time out after ``transaction_timeout_ms`` (10 s).
START_WITHIN_S = 20.0
_CHECK_EVERY_S = 1.0


class Starts:
    def __init__(
        self, role: str, metrics: Metrics, health: Health | None = None, after_s: float = START_WITHIN_S
    ) -> None:
        self.role = role
        self.after_s = after_s
        self._metrics = metrics
        self._health = health
        self._waiting: dict[TP, float] = {}  # assigned, never seen fetched: since when (monotonic)
        self.stuck: dict[TP, float] = {}  # found not started and assigned again: since when (wall clock)
        self._last = 0.0  # the last check
        self._next_check = 0.0

    def assigned(self, tps: Iterable[TP], now: float) -> None:
        for tp in tps:
            self._waiting[tp] = now

    def released(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._waiting.pop(tp, None)
            self.stuck.pop(tp, None)
        self._report()

    def clear(self) -> None:
        self._waiting.clear()
        self.stuck.clear()
        self._report()

    def check(self, consumer: Consumer, held: set[TP], connected: bool, now: float) -> list[TP]:
        """At most once a second: forget the partitions that have started; assign again, and return, those
        that have waited ``after_s`` for a start (time held or disconnected not counted)."""
        if not self._waiting or now < self._next_check:
            return []
        elapsed = now - self._last
        self._last, self._next_check = now, now + _CHECK_EVERY_S
        overdue: list[TP] = []
        for tp, since in list(self._waiting.items()):
            if tp in held or not connected:
                self._waiting[tp] = min(now, since + elapsed)  # its clock waits
            elif consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)[1] >= 0:
                del self._waiting[tp]  # fetched at least once
                self.stuck.pop(tp, None)
            elif now - since >= self.after_s:
                overdue.append(tp)
                self._waiting[tp] = now  # the new assignment gets its own time
        if overdue:
            self._assign_again(consumer, sorted(overdue))
        self._report()
        return overdue

    def _assign_again(self, consumer: Consumer, tps: list[TP]) -> None:
        wall = time.time()
        for tp in tps:
            self.stuck.setdefault(tp, wall)
        shown = [f"{t}[{p}]" for t, p in tps]
        log.error(
            "%s reader: %s assigned but never fetched in %.0f s; assigning them again", self.role, shown, self.after_s
        )
        self._metrics.partitions_reassigned.labels(self.role).inc(len(tps))
        partitions = [TopicPartition(t, p) for t, p in tps]
        try:
            consumer.incremental_unassign(partitions)
            consumer.incremental_assign(partitions)  # no offset: the committed one is asked for again
        except KafkaException as exc:
            log.warning("%s reader: assigning %s again failed: %s", self.role, shown, exc)

    def _report(self) -> None:
        if self._health is not None:
            self._health.unstarted(self.role, min(self.stuck.values()) if self.stuck else None)
