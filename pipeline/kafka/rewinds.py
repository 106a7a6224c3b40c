"""Reading again: where a reader goes back to after a failed batch or an aborted transaction, and how long
it waits first.

A batch fails here only for a cause outside its events (per-event failures never get here), so waiting is
what may help: its partitions are sought back to the batch's first record and held for a backoff that
doubles while the same offset keeps failing, and nothing is committed past them meanwhile. An aborted
transaction leaves nothing of its outputs visible, so every assigned partition goes back to its committed
offset. A commit past a rewound offset ends its count: the next failure there starts a new backoff.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.kafka.holds import Holds
from pipeline.kafka.offsets import TP, OffsetTracker, Ticket
from pipeline.kafka.retry import RetryPolicy
from pipeline.observability.metrics import Metrics

log = logging.getLogger("pipeline.reader")


class CommittedUnavailable(Exception):
    """The committed offsets could not be read after an abort: the reader must start over with a new
    consumer."""


class Rewinds:
    def __init__(self, role: str, tracker: OffsetTracker, holds: Holds, backoff: RetryPolicy, metrics: Metrics) -> None:
        self._role = role
        self._tracker = tracker
        self._holds = holds
        self._backoff = backoff
        self._metrics = metrics
        self._at: dict[TP, tuple[int, int]] = {}  # tp -> (offset read again from, consecutive count)
        self.count = 0  # partitions read again, over the reader's life

    def failed(self, consumer: Consumer, failures: list[Ticket]) -> set[TP]:
        """Seek the failed batches' partitions back and hold them for their backoff; returns them."""
        tps: set[TP] = set()
        for ticket in failures:
            tps.update(ticket.ranges)
        points = self._tracker.rewind_point(tps)
        now = time.monotonic()
        delay = 0.0
        for tp, offset in points.items():
            last, count = self._at.get(tp, (-1, 0))
            count = count + 1 if last == offset else 1
            self._at[tp] = (offset, count)
            delay = max(delay, self._backoff.delay_s(count))
            self._holds.seek(consumer, TopicPartition(tp[0], tp[1], offset))
            self.count += 1
        self._holds.back_off(list(points), now + delay)
        self._metrics.rewinds.labels(self._role).inc(len(failures))
        attempt = max((self._at[tp][1] for tp in points), default=1)
        where = ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(points.items()))
        log.error(
            "%s reader: batch %d failed (%s: %s); reading %s again in %.1f s (attempt %d)",
            self._role,
            failures[0].id,
            type(failures[0].error).__name__,
            failures[0].error,
            where or "nothing (its partitions are gone)",
            delay,
            attempt + 1,
        )
        return tps

    def from_committed(self, consumer: Consumer, tps: set[TP], exc: BaseException) -> None:
        """Seek every partition in ``tps`` back to its committed offset and hold it for a backoff."""
        self._tracker.forget(tps)
        self._tracker.take_failures()
        now = time.monotonic()
        count = 1 + max((c for _, c in self._at.values()), default=0)
        delay = self._backoff.delay_s(count)
        try:
            committed = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        except KafkaException as err:
            raise CommittedUnavailable(f"{self._role}: committed offsets unavailable after an abort: {err}") from None
        for tp in committed:
            low, _high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
            offset = tp.offset if tp.offset >= 0 else max(low, 0)
            self._holds.seek(consumer, TopicPartition(tp.topic, tp.partition, offset))
            self._at[(tp.topic, tp.partition)] = (offset, count)
            self._holds.back_off([(tp.topic, tp.partition)], now + delay)
        self.count += 1
        self._metrics.rewinds.labels(self._role).inc()
        log.error(
            "%s reader: %s; reading %d partition(s) again from their commits in %.1f s",
            self._role,
            exc,
            len(tps),
            delay,
        )

    def committed(self, offsets: dict[TP, int]) -> None:
        for tp, offset in offsets.items():
            rewound = self._at.get(tp)
            if rewound is not None and offset > rewound[0]:
                del self._at[tp]

    def release(self, tps: set[TP]) -> None:
        for tp in tps:
            self._at.pop(tp, None)

    def clear(self) -> None:
        self._at.clear()
