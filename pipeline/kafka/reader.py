"""The batch reader: one confluent-kafka consumer in a thread of its own, feeding an agent's hand-off.

Why a client thread rather than Faust's topic stream: Faust's per-event machinery (one event object, a
dispatch and a thread hop per record) caps a process near 14k events/s on our machines, while a client
that reads in batches and hands each batch over as one item runs at the client's speed, and leaves the
offsets ours to commit after the outputs are acknowledged.

The thread owns the consumer: it polls, closes batches by size or deadline, commits what the tracker
allows, rewinds partitions whose batch failed, pauses bulk partitions while the priority lane has
records, and on revocation or shutdown waits for in-flight batches before it commits and lets go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.kafka.batching import Batch, BatchPolicy
from pipeline.kafka.lane import PriorityLane
from pipeline.kafka.offsets import TP, OffsetTracker
from pipeline.observability.metrics import Metrics

log = logging.getLogger("pipeline.reader")

# How often an open batch looks again whether the agent turned idle.
_IDLE_CHECK_S = 0.002
_IDLE_POLL_S = 0.2  # an idle reader's poll: how soon it sees a stop or commits a settled batch


class HandOff(Protocol):
    """Where a reader's batches go: the agent's bounded queue."""

    def put(self, batch: Batch, stopping: Callable[[], bool]) -> bool:
        """Block until the agent's queue took the batch (the backpressure that bounds memory); False when
        ``stopping()`` turned true first or the agent is gone (the batch is then dropped, never committed)."""
        ...

    def idle(self) -> bool:
        """Whether the agent has nothing queued or in hand."""
        ...


@dataclass
class ReaderStats:
    consumed: int = 0
    batches: int = 0
    commits: int = 0
    rewinds: int = 0
    lane_pauses: int = 0
    assigned: set[TP] = field(default_factory=set)


class FatalReaderError(Exception):
    """The reader cannot go on without risking loss; the worker must stop with a non-zero exit."""


class BatchReader(threading.Thread):
    def __init__(
        self,
        name: str,
        consumer_config: dict[str, Any],
        topics: Sequence[str],
        policy: BatchPolicy,
        tracker: OffsetTracker,
        handoff: HandOff,
        metrics: Metrics,
        *,
        priority_topics: Sequence[str] = (),
        on_assigned: Callable[[], None] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        drain_timeout_s: float = 8.0,
        max_rewinds: int = 5,
    ) -> None:
        super().__init__(name=f"reader-{name}", daemon=True)
        self.role = name
        self._config = consumer_config
        self._topics = list(topics)
        self._lane = PriorityLane(priority_topics)
        self._policy = policy
        self._handoff = handoff
        self._metrics = metrics
        self._tracker = tracker
        self._on_assigned = on_assigned
        self._on_fatal = on_fatal
        self._drain_timeout_s = drain_timeout_s
        self._max_rewinds = max_rewinds
        self._stop_event = threading.Event()
        self._pending: list[Message] = []
        self._first_at: float | None = None
        self._rewinds: dict[TP, tuple[int, int]] = {}  # tp -> (offset, consecutive count)
        self._to_commit: dict[TP, int] = {}  # committable, not yet confirmed by the broker
        self._commit_retry_at = 0.0
        self.stats = ReaderStats()
        self.ready = threading.Event()  # set once partitions are assigned
        self.error: BaseException | None = None
        self._consumer: Consumer | None = None

    # -- control from other threads ------------------------------------------------------------

    def stop(self) -> None:
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    # -- the thread ----------------------------------------------------------------------------

    def run(self) -> None:
        consumer = Consumer({**self._config, "on_commit": self._on_commit})
        self._consumer = consumer
        try:
            consumer.subscribe(
                self._topics + sorted(self._lane.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._loop(consumer)
            self._drain(consumer)
        except BaseException as exc:  # the worker must learn of it, not a silent dead thread
            self.error = exc
            log.error("%s reader stopped on an error: %s", self.role, exc, exc_info=exc)
            if self._on_fatal is not None:
                self._on_fatal(exc)
        finally:
            try:
                consumer.close()
            except Exception as exc:
                log.warning("%s reader: closing the consumer failed: %s", self.role, exc)

    def _loop(self, consumer: Consumer) -> None:
        idle = self._handoff.idle
        while not self._stop_event.is_set():
            self._commit_and_rewind(consumer)
            now = time.monotonic()
            limit = self._policy.limit()
            wait = self._policy.remaining_s(self._first_at, len(self._pending), now, limit)
            if self._pending and (wait <= 0 or idle()):
                self._hand_off()
                continue
            want = limit - len(self._pending)
            called_at = time.monotonic()
            if not self._pending:
                # Nothing open: return with the first record, then take whatever else is already fetched.
                # The poll returns as soon as a record is there, so it may block long (no deadline runs
                # yet) and the batch opens when it returns: an idle reader wakes 5 times a second, not
                # every W (each wake-up takes a core from the model's intra-op threads, see writer).
                # While the bulk is paused for the lane, the short wait: the lane's end is seen soon.
                first = consumer.poll(min(wait, 0.2) if self._lane.bulk_paused else _IDLE_POLL_S)
                called_at = time.monotonic()
                messages = [] if first is None else [first, *consumer.consume(max(1, want - 1), timeout=0)]
            else:
                # Short slices while the agent is busy, so that its turning idle is seen soon.
                timeout = min(wait, _IDLE_CHECK_S) if wait else _IDLE_CHECK_S
                messages = consumer.consume(num_messages=max(1, want), timeout=timeout)
            self._take(messages, called_at)
            if self._lane:
                self._lane.steer(consumer, messages, self.stats.assigned)
                self.stats.lane_pauses = self._lane.pauses
            if len(self._pending) >= limit:
                self._hand_off()

    def _take(self, messages: list[Message], called_at: float) -> None:
        """A batch opens when the consume call that brought its first record began: that record may have
        arrived at any point of the call, so the deadline counts from the call's start (W at most)."""
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise FatalReaderError(f"{self.role} consumer: {err.str()}")
                log.warning("%s consumer: %s", self.role, err.str())
                continue
            if not self._pending:
                self._first_at = called_at
            self._pending.append(msg)
        self.stats.consumed += len(messages)

    def _hand_off(self) -> None:
        messages, self._pending, self._first_at = self._pending, [], None
        ranges: dict[TP, tuple[int, int]] = {}
        for msg in messages:
            tp = (msg.topic(), msg.partition())
            offset = msg.offset()
            first, _ = ranges.get(tp, (offset, offset))
            ranges[tp] = (first, offset)
        ticket = self._tracker.open(ranges)
        batch = Batch(messages, ticket)
        self.stats.batches += 1
        self._metrics.batch_size.labels(self.role).observe(len(messages))
        per_topic: dict[str, int] = {}
        for (topic, _), (first, last) in ranges.items():
            per_topic[topic] = per_topic.get(topic, 0) + last - first + 1
        for topic, n in per_topic.items():
            self._metrics.events_consumed.labels(self.role, topic).inc(n)
        if not self._handoff.put(batch, self._stop_event.is_set):  # stopping: dropped, never committed
            self._tracker.discard(ticket)

    # -- commits and rewinds -------------------------------------------------------------------

    def _commit_and_rewind(self, consumer: Consumer, sync: bool = False) -> None:
        failures = self._tracker.take_failures()
        if failures:
            self._rewind(consumer, failures)
        for tp, offset in self._tracker.take_commits().items():
            if offset > self._to_commit.get(tp, -1):
                self._to_commit[tp] = offset
        now = time.monotonic()
        if not self._to_commit or (not sync and now < self._commit_retry_at):
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._to_commit.items()]
        try:
            if sync:
                done = consumer.commit(offsets=offsets, asynchronous=False)
                self._committed(done or [])
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
                self._commit_retry_at = now + 0.1
        except KafkaException as exc:
            # Nothing is lost: the offsets stay queued and are committed again, or the records are
            # processed again after a restart.
            log.warning("%s reader: commit failed: %s", self.role, exc)
            self._commit_retry_at = now + 1.0

    def _committed(self, partitions: list[TopicPartition]) -> None:
        """Drop the offsets the broker has stored; a failed or newer one stays queued for the next commit."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if tp.error is None and self._to_commit.get(key, -1) <= tp.offset:
                self._to_commit.pop(key, None)
        self.stats.commits += 1

    def _rewind(self, consumer: Consumer, failures: list[Any]) -> None:
        tps: set[TP] = set()
        for ticket in failures:
            tps.update(ticket.ranges)
            log.error(
                "%s reader: batch %d failed (%s); rewinding %s",
                self.role,
                ticket.id,
                ticket.error,
                sorted(ticket.ranges),
            )
        points = self._tracker.rewind_point(tps)
        self._pending = [m for m in self._pending if (m.topic(), m.partition()) not in tps]
        if not self._pending:
            self._first_at = None
        for tp, offset in points.items():
            last, count = self._rewinds.get(tp, (-1, 0))
            count = count + 1 if last == offset else 1
            self._rewinds[tp] = (offset, count)
            if count > self._max_rewinds:
                raise FatalReaderError(
                    f"{self.role}: the batch at {tp[0]}[{tp[1]}]@{offset} failed {count} times in a row; "
                    "stopping without committing past it"
                )
            consumer.seek(TopicPartition(tp[0], tp[1], offset))
            self.stats.rewinds += 1

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None:
            log.warning("%s reader: commit failed (will retry): %s", self.role, err.str())
            self._commit_retry_at = time.monotonic() + 1.0
            return
        self._committed(partitions)

    # -- rebalances ----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.assigned.update((p.topic, p.partition) for p in partitions)
        self._lane.on_assign(consumer, partitions)
        log.info("%s reader: assigned %s", self.role, [f"{p.topic}[{p.partition}]" for p in partitions])
        self.ready.set()
        if self._on_assigned is not None:
            self._on_assigned()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._release(consumer, tps, commit=True)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._release(consumer, tps, commit=False)

    def _release(self, consumer: Consumer, tps: set[TP], commit: bool) -> None:
        """Finish or drop the partitions' in-flight batches before the rebalance goes on."""
        self._pending = [m for m in self._pending if (m.topic(), m.partition()) not in tps]
        if not self._pending:
            self._first_at = None
        if commit:
            if not self._tracker.wait_idle(tps, self._drain_timeout_s):
                log.warning("%s reader: in-flight batches of %s dropped at revocation", self.role, sorted(tps))
            self._commit_and_rewind(consumer, sync=True)
        self._tracker.forget(tps)
        for tp in tps:
            self._to_commit.pop(tp, None)
        self.stats.assigned.difference_update(tps)
        log.info("%s reader: released %s", self.role, sorted(tps))

    # -- shutdown ------------------------------------------------------------------------------

    def _drain(self, consumer: Consumer) -> None:
        """Stop reading; wait for the batches in flight; commit what they acknowledged."""
        self._pending, self._first_at = [], None
        assigned = set(self.stats.assigned)
        if not self._tracker.wait_idle(assigned, self._drain_timeout_s):
            log.warning("%s reader: in-flight batches not finished within %.1f s", self.role, self._drain_timeout_s)
        self._commit_and_rewind(consumer, sync=True)
