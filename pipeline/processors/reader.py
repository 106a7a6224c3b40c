"""The batch reader: one confluent-kafka consumer in a thread of its own, feeding an agent's channel.

Why a client thread rather than Faust's topic stream: Faust's per-event machinery caps a process near
14k events/s (MEASURED.md), while a client that reads in batches and hands each batch over as one stream
item runs at the client's speed, and leaves the offsets ours to commit after the outputs are acknowledged.

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
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.observability.metrics import BATCH_SIZE, EVENTS_CONSUMED
from pipeline.processors.batch import Batch, BatchPolicy
from pipeline.processors.offsets import TP, OffsetTracker

log = logging.getLogger("pipeline.reader")

# How often an open batch looks again whether the agent turned idle.
_IDLE_CHECK_S = 0.002
_IDLE_POLL_S = 0.2  # an idle reader's poll: how soon it sees a stop or commits a settled batch

Deliver = Callable[[Batch], bool]  # blocks until the agent's channel took the batch; False when stopping


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
        deliver: Deliver,
        *,
        priority_topics: Sequence[str] = (),
        size_hint: Callable[[], int] | None = None,
        agent_idle: Callable[[], bool] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        drain_timeout_s: float = 8.0,
        max_rewinds: int = 5,
    ) -> None:
        super().__init__(name=f"reader-{name}", daemon=True)
        self.role = name
        self._config = consumer_config
        self._topics = list(topics)
        self._priority = set(priority_topics)
        self._policy = policy
        # The agent's wish for N, asked before each poll (the inference agent sizes items by model speed).
        self._size_hint = size_hint
        # Whether the agent has nothing queued or in hand: then an open batch goes over at once rather
        # than after W (batching is for when the agent is busy; an idle one only adds latency waiting).
        self._agent_idle = agent_idle
        self._tracker = tracker
        self._deliver = deliver
        self._on_fatal = on_fatal
        self._drain_timeout_s = drain_timeout_s
        self._max_rewinds = max_rewinds
        self._stop_event = threading.Event()
        self._pending: list[Message] = []
        self._first_at: float | None = None
        self._bulk_paused = False
        self._rewinds: dict[TP, tuple[int, int]] = {}  # tp -> (offset, consecutive count)
        self._to_commit: dict[TP, int] = {}  # committable, not yet confirmed by the broker
        self._commit_retry_at = 0.0
        self.stats = ReaderStats()
        self.ready = threading.Event()  # set once partitions are assigned
        self.error: BaseException | None = None
        self._consumer: Consumer | None = None
        self._lanes_of: set[TP] | None = None
        self._lanes_cache: tuple[list[TP], list[TP]] = ([], [])

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
                self._topics + sorted(self._priority),
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
        idle = self._agent_idle
        while not self._stop_event.is_set():
            self._commit_and_rewind(consumer)
            now = time.monotonic()
            limit = max(1, self._size_hint()) if self._size_hint is not None else self._policy.max_events
            wait = self._policy.remaining_s(self._first_at, len(self._pending), now, limit)
            if self._pending and (wait <= 0 or (idle is not None and idle())):
                self._hand_off()
                continue
            want = limit - len(self._pending)
            called_at = time.monotonic()
            if idle is not None and not self._pending:
                # Nothing open: return with the first record, then take whatever else is already fetched.
                # The poll returns as soon as a record is there, so it may block long (no deadline runs
                # yet) and the batch opens when it returns: an idle reader wakes 5 times a second, not
                # every W (each wake-up takes a core from the model's intra-op threads, see writer).
                # While the bulk is paused for the lane, the short wait: the lane's end is seen soon.
                first = consumer.poll(min(wait, 0.2) if self._bulk_paused else _IDLE_POLL_S)
                called_at = time.monotonic()
                messages = [] if first is None else [first, *consumer.consume(max(1, want - 1), timeout=0)]
            else:
                # Short slices while the agent is busy, so that its turning idle is seen soon.
                timeout = min(wait, 0.2) if wait else 0.2
                if idle is not None:
                    timeout = min(timeout, _IDLE_CHECK_S)
                messages = consumer.consume(num_messages=max(1, want), timeout=timeout)
            self._take(messages, called_at)
            if self._priority:
                self._steer_lane(consumer, messages)
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
        BATCH_SIZE.labels(self.role).observe(len(messages))
        per_topic: dict[str, int] = {}
        for (topic, _), (first, last) in ranges.items():
            per_topic[topic] = per_topic.get(topic, 0) + last - first + 1
        for topic, n in per_topic.items():
            EVENTS_CONSUMED.labels(self.role, topic).inc(n)
        if not self._deliver(batch):  # stopping: the batch is dropped, its offsets never committed
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

    # -- the priority lane ---------------------------------------------------------------------

    def _steer_lane(self, consumer: Consumer, messages: list[Message]) -> None:
        """Pause bulk partitions while the lane has records; order within a partition is untouched.

        Cheap on the common path: the assignment is the one the rebalance callbacks track (no client call
        per poll), a lane record in this poll marks the lane busy, and positions and watermarks are only
        asked for while the bulk is paused (to learn when the lane is drained).
        """
        if not self._priority:
            return
        lane, bulk = self._lanes()
        if not lane or not bulk:
            return
        priority = self._priority
        lane_busy = any(m.topic() in priority and m.error() is None for m in messages)
        if not lane_busy and self._bulk_paused:
            lane_tps = [TopicPartition(t, p) for t, p in lane]
            for tp, pos in zip(lane_tps, consumer.position(lane_tps), strict=True):
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                position = pos.offset
                if high >= 0 and position not in (OFFSET_INVALID,) and position >= 0 and high > position:
                    lane_busy = True
                    break
        if lane_busy and not self._bulk_paused:
            bulk_tps = [TopicPartition(t, p) for t, p in bulk]
            consumer.pause(bulk_tps)
            # Records already fetched for the bulk partitions would still come out of consume(): seek
            # each to its own position, which drops them from the local queue (they are fetched again on
            # resume), so the lane's records go first. Order within a partition is unchanged.
            for tp in consumer.position(bulk_tps):
                if tp.offset >= 0:
                    consumer.seek(tp)
            self._bulk_paused = True
            self.stats.lane_pauses += 1
        elif not lane_busy and self._bulk_paused:
            consumer.resume([TopicPartition(t, p) for t, p in bulk])
            self._bulk_paused = False

    def _lanes(self) -> tuple[list[TP], list[TP]]:
        """The assigned lane and bulk partitions, recomputed only when the assignment changed."""
        assigned = self.stats.assigned
        if self._lanes_of is None or self._lanes_of != assigned:
            lane = sorted(tp for tp in assigned if tp[0] in self._priority)
            bulk = sorted(tp for tp in assigned if tp[0] not in self._priority)
            self._lanes_of, self._lanes_cache = set(assigned), (lane, bulk)
        return self._lanes_cache

    # -- rebalances ----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.assigned.update((p.topic, p.partition) for p in partitions)
        if self._bulk_paused:
            bulk = [p for p in partitions if p.topic not in self._priority]
            if bulk:
                consumer.pause(bulk)
        log.info("%s reader: assigned %s", self.role, [f"{p.topic}[{p.partition}]" for p in partitions])
        self.ready.set()

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
