"""The batch reader: one confluent-kafka consumer in a thread of its own, feeding an agent's hand-off.

Why a client thread rather than Faust's topic stream: Faust's per-event machinery (one event object, a
dispatch and a thread hop per record) caps a process near 14k events/s on our machines, while a client
that reads in batches and hands each batch over as one item runs at the client's speed, and leaves the
offsets ours to commit after the outputs are acknowledged.

The thread owns the consumer: it polls, closes batches by size or deadline, commits what the tracker
allows (at most every ``commit_interval_s``), and holds partitions (pauses them, dropping what was already
fetched for them) for three reasons: the bulk while the priority lane's reader has records; a failed batch's
partitions while they wait out an exponential backoff before they are read again (rewind); every partition
while its gate says so (the model's circuit open, the writer's backlog full). On revocation or shutdown it
waits for in-flight batches before it commits and lets go. Nothing transient stops it: a failed batch is
read again, and a consumer that hit a fatal client error is replaced by a new one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.kafka.batching import Batch, BatchPolicy, HandOff
from pipeline.kafka.commits import Commits, OffsetCommits, TransactionCommits
from pipeline.kafka.holds import Gate, Holds
from pipeline.kafka.lane import LaneSignal
from pipeline.kafka.offsets import TP, OffsetTracker, Ticket
from pipeline.kafka.reachability import Reachability
from pipeline.kafka.retry import RetryPolicy
from pipeline.kafka.rewinds import CommittedUnavailable, Rewinds
from pipeline.kafka.starts import START_WITHIN_S, Starts
from pipeline.kafka.transactions import TransactionAborted, TransactionalWriter
from pipeline.observability.health import Health
from pipeline.observability.metrics import Metrics

log = logging.getLogger("pipeline.reader")

# How often an open batch looks again whether the agent turned idle.
_IDLE_CHECK_S = 0.002
_IDLE_POLL_S = 0.2  # an idle reader's poll: how soon it sees a stop or commits a settled batch
_TXN_POLL_S = 0.005  # with batches in an open transaction: how soon a turning-idle agent's commit goes


@dataclass
class ReaderStats:
    consumed: int = 0
    batches: int = 0
    commits: int = 0
    rewinds: int = 0
    assigned: set[TP] = field(default_factory=set)


class FatalReaderError(Exception):
    """The consumer reported a fatal error: it cannot be used again; the reader makes a new one."""


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
        lane: LaneSignal | None = None,
        yields_to: LaneSignal | None = None,
        health: Health | None = None,
        gate: Gate | None = None,
        backoff: RetryPolicy | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        drain_timeout_s: float = 8.0,
        commit_interval_s: float = 0.1,
        transactions: TransactionalWriter | None = None,
        after_close: Callable[[], None] | None = None,
        start_within_s: float = START_WITHIN_S,
    ) -> None:
        super().__init__(name=f"reader-{name}", daemon=True)
        self.role = name
        self._config = consumer_config
        self._topics = list(topics)
        self._lane = lane  # the lane's own reader: it reports here whether it has records
        self._holds = Holds(gate, yields_to)
        self._policy = policy
        self._handoff = handoff
        self._metrics = metrics
        self._tracker = tracker
        self._health = health
        self._backoff = backoff or RetryPolicy(base_delay_s=0.2, max_delay_s=30.0)
        self._on_fatal = on_fatal
        self._after_close = after_close  # once its consumer is closed for good (a worker leaving its group)
        self._drain_timeout_s = drain_timeout_s
        self._commit_interval_s = commit_interval_s
        self._fatal: KafkaError | None = None
        # Exactly-once: offsets go into the role's transactions (committed by this writer), never commit().
        self._commits: Commits = (
            TransactionCommits(name, tracker, transactions, commit_interval_s)
            if transactions is not None
            else OffsetCommits(name, tracker, commit_interval_s, self._fatal_error)
        )
        self._stop_event = threading.Event()
        self._pending: list[Message] = []
        self._first_at: float | None = None
        self._rewinds = Rewinds(name, tracker, self._holds, self._backoff, metrics)
        self._holding: str | None = None
        self._reach = Reachability(name, self._topics[0], health)
        self._starts = Starts(name, metrics, health, start_within_s)  # partitions the client never starts
        self._work = False
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
        while not self._stop_event.is_set():
            on_commit = self._commits.on_commit if isinstance(self._commits, OffsetCommits) else None
            consumer = Consumer(
                {**self._config, "error_cb": self._on_client_error, **({"on_commit": on_commit} if on_commit else {})}
            )
            self._consumer = consumer
            closed = False
            try:
                consumer.subscribe(
                    self._topics,
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoke,
                    on_lost=self._on_lost,
                )
                self._loop(consumer)
                self._drain(consumer)
                consumer.close()
                closed = True
                if self._after_close is not None:
                    self._after_close()
                return
            except FatalReaderError as exc:
                # A consumer that hit a fatal client error (a static member fenced after its session
                # expired in a broker outage) cannot be used again, but the worker can go on: let go of
                # everything it held and join with a new one; what was in flight is read again.
                delay = self._backoff.delay_s(1)
                log.error("%s reader: %s; a new consumer joins in %.1f s", self.role, exc, delay)
                self._let_go_of_everything()
                self._stop_event.wait(delay)
            except BaseException as exc:  # the worker must learn of it, not a silent dead thread
                self.error = exc
                log.error("%s reader stopped on an error: %s", self.role, exc, exc_info=exc)
                if self._on_fatal is not None:
                    self._on_fatal(exc)
                return
            finally:
                if self._lane is not None:
                    self._lane.report(False)
                try:
                    if not closed:
                        consumer.close()
                except Exception as exc:
                    log.warning("%s reader: closing the consumer failed: %s", self.role, exc)

    def _let_go_of_everything(self) -> None:
        assigned = set(self.stats.assigned)
        self._tracker.forget(assigned)
        self._pending, self._first_at = [], None
        self._commits.release(assigned, lost=False)
        self._holds.clear()
        self._rewinds.clear()
        self._starts.clear()
        self.stats.assigned.clear()
        if self._health is not None:
            self._health.assignment(self.role, 0)

    def _loop(self, consumer: Consumer) -> None:
        idle = self._handoff.idle
        self._fatal = None
        while not self._stop_event.is_set():
            if self._fatal is not None:
                raise FatalReaderError(f"{self.role} consumer: fatal error: {self._fatal.str()}")
            self._commit_and_rewind(consumer)
            self._apply_holds(consumer)
            if not self._reach.connected:
                self._reach.check(consumer)
            now = time.monotonic()
            self._starts.check(consumer, self._holds.paused, self._reach.connected, now)
            limit = self._policy.limit()
            wait = self._policy.remaining_s(self._first_at, len(self._pending), now, limit)
            if self._pending and self._policy.closes(wait, idle(), self._handoff.waiting()):
                self._hand_off(full=False)
                continue
            want = limit - len(self._pending)
            called_at = time.monotonic()
            if not self._pending:
                # Nothing open: return with the first record, then take whatever else is already fetched.
                # The poll returns as soon as a record is there, so it may block long (no deadline runs
                # yet) and the batch opens when it returns: an idle reader wakes 5 times a second, not
                # every W (each wake-up takes a core from the model's intra-op threads, see writer).
                # While something is held, the short wait: the end of the hold is seen soon.
                held = self._holds.waiting()
                timeout = min(wait, 0.2) if held else _IDLE_POLL_S
                if isinstance(self._commits, TransactionCommits) and (self._work or self._commits.waiting()):
                    timeout = _TXN_POLL_S  # its outputs are invisible until the transaction commits
                first = consumer.poll(timeout)
                called_at = time.monotonic()
                messages = [] if first is None else [first, *consumer.consume(max(1, want - 1), timeout=0)]
                if first is None and self._lane is not None:
                    self._lane.report(False)  # caught up
            else:
                # Short slices while the agent is busy, so that its turning idle (or its queue's room, for a
                # batch past its deadline) is seen soon.
                timeout = min(wait, _IDLE_CHECK_S) if wait else _IDLE_CHECK_S
                messages = consumer.consume(num_messages=max(1, want), timeout=timeout)
            self._take(messages, called_at)
            if len(self._pending) >= limit:
                self._hand_off(full=True)

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
            self._reach.answered()
        self.stats.consumed += len(messages)

    def _hand_off(self, full: bool) -> None:
        """``full``: the batch closed on its size, so more records may be waiting (for the lane's reader,
        a backlog the bulk waits for); else on its deadline or an idle agent."""
        if self._lane is not None:
            self._lane.report(full)
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
        if not self._work:
            self._work_changed(True)
        self._metrics.batch_size.labels(self.role).observe(len(messages))
        per_topic: dict[str, int] = {}
        for (topic, _), (first, last) in ranges.items():
            per_topic[topic] = per_topic.get(topic, 0) + last - first + 1
        for topic, n in per_topic.items():
            self._metrics.events_consumed.labels(self.role, topic).inc(n)
        if not self._handoff.put(batch, self._stop_event.is_set):  # stopping: dropped, never committed
            self._tracker.discard(ticket)

    # -- holds: the lane, backoffs and the gate ------------------------------------------------

    def _apply_holds(self, consumer: Consumer) -> None:
        pending = self._holds.apply(consumer, self.stats.assigned, self._pending)
        if pending is not self._pending:
            self._pending = pending
            if not pending:
                self._first_at = None
        if self._holds.reason != self._holding:
            self._holding = self._holds.reason
            if self._health is not None:
                self._health.holding(self.role, self._holding)

    # -- commits and rewinds -------------------------------------------------------------------

    def _commit_and_rewind(self, consumer: Consumer, sync: bool = False) -> None:
        failures = self._tracker.take_failures()
        if failures:
            self._rewind(consumer, failures)
        try:
            offsets = self._commits.commit(consumer, sync, self._handoff.idle())
        except (TransactionAborted, KafkaException) as exc:
            self._read_again_from_committed(consumer, exc)
            return
        if offsets:
            self._rewinds.committed(offsets)
            if self._health is not None:
                self._health.progress(self.role)
        if self._work and (offsets or sync) and not self._tracker.in_flight_any():
            self._work_changed(False)
        self.stats.commits = self._commits.commits

    def _read_again_from_committed(self, consumer: Consumer, exc: BaseException) -> None:
        """A transaction aborted: nothing of it is visible, so every assigned partition is read again from
        its committed offset, after a backoff."""
        self._pending, self._first_at = [], None
        try:
            self._rewinds.from_committed(consumer, set(self.stats.assigned), exc)
        except CommittedUnavailable as err:
            raise FatalReaderError(str(err)) from None
        self.stats.rewinds = self._rewinds.count
        if self._work:
            self._work_changed(False)

    def _rewind(self, consumer: Consumer, failures: list[Ticket]) -> None:
        tps = self._rewinds.failed(consumer, failures)
        self._pending = [m for m in self._pending if (m.topic(), m.partition()) not in tps]
        if not self._pending:
            self._first_at = None
        self.stats.rewinds = self._rewinds.count
        if not self._tracker.in_flight_any() and self._work:
            self._work_changed(False)

    def _fatal_error(self, err: KafkaError) -> None:
        self._fatal = err  # seen by the loop, which replaces the consumer

    # -- the broker's reachability (pipeline/kafka/reachability.py) ------------------------------

    def _on_client_error(self, err: KafkaError) -> None:
        """librdkafka's error callback, served in this thread's polls."""
        if err.fatal():
            self._fatal = err
        else:
            self._reach.on_error(err)

    def _work_changed(self, pending: bool) -> None:
        self._work = pending
        if self._health is not None:
            self._health.work(self.role, pending)

    # -- rebalances ----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.assigned.update((p.topic, p.partition) for p in partitions)
        self._starts.assigned(((p.topic, p.partition) for p in partitions), time.monotonic())
        log.info("%s reader: assigned %s", self.role, [f"{p.topic}[{p.partition}]" for p in partitions])
        self.ready.set()
        if self._health is not None:
            self._health.assignment(self.role, len(self.stats.assigned))

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
        read_again = self._commits.release(tps, lost=not commit)
        self._tracker.forget(tps)
        self._holds.release(tps)
        self._rewinds.release(tps)
        self._starts.released(tps)
        self.stats.assigned.difference_update(tps)
        if self._lane is not None and not self.stats.assigned:
            self._lane.report(False)  # nothing of the lane left here: the bulk must not stay held
        if self._health is not None:
            self._health.assignment(self.role, len(self.stats.assigned))
        log.info("%s reader: released %s", self.role, sorted(tps))
        if read_again and self.stats.assigned:
            self._read_again_from_committed(consumer, TransactionAborted(f"partitions {sorted(tps)} lost"))

    # -- shutdown ------------------------------------------------------------------------------

    def _drain(self, consumer: Consumer) -> None:
        """Stop reading; wait for the batches in flight; commit what they acknowledged."""
        self._pending, self._first_at = [], None
        assigned = set(self.stats.assigned)
        if not self._tracker.wait_idle(assigned, self._drain_timeout_s):
            log.warning("%s reader: in-flight batches not finished within %.1f s", self.role, self._drain_timeout_s)
        self._commit_and_rewind(consumer, sync=True)
