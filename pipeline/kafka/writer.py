"""The output writer: one idempotent producer (acks=all) whose delivery reports settle tickets, and the
one emitter of every stage's records.

A delivery report is the broker's acknowledgement; only then does a record's output count for the commit
rule. What the broker says decides what happens next:

- acknowledged: the record's ticket is settled;
- refused for good because of the record itself (too large, invalid): the record's source event fails
  alone. ``on_refused`` turns it into that event's error event and dead letter, written under the same
  ticket; a record with nothing to fall back to (an error event or a dead letter that cannot be written
  either) is logged with its coordinates and counted, and the worker goes on;
- a transient failure (a timed-out or retriable produce): sent again with exponential backoff up to the
  retry policy's limit; past it, or on any other permanent error (a missing topic, no authorization), the
  ticket fails and its batch is read again later, never committed past.

Unacknowledged records are bounded (``max_in_flight``): past it, :meth:`OutputWriter.backlogged` is true
and the readers stop handing over batches, so a long broker outage under a backlog fills no queue.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.kafka.offsets import Ticket
from pipeline.kafka.records import OutRecord
from pipeline.kafka.retry import RetryPolicy
from pipeline.observability.metrics import Metrics

log = logging.getLogger("pipeline.writer")


# How often the writer's thread serves delivery reports while records are in flight (they settle tickets;
# only commits wait for them), and how long it may block in the producer's poll when none are.
_POLL_EVERY_S = 0.005
_IDLE_POLL_S = 0.25

Refused = Callable[[OutRecord, str, bool], Sequence[OutRecord]]
"""What to write instead of a record the broker refused for good: the source event's error event and dead
letter, or nothing when the record has nothing to fall back to. Called with the record, the broker's
reason and whether the record was too large."""


class OutputLost(Exception):
    """A record could not be written within the retry policy."""


@dataclass
class _Out:
    record: OutRecord
    ticket: Ticket | None
    attempts: int = 0


@dataclass
class WriterStats:
    retries: int = 0
    lost: int = 0
    refused: int = 0
    unwritable: int = 0


_TRANSIENT = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError._TRANSPORT,
}

# Refusals that are about the record itself: sending it again can never succeed, and it says nothing
# about the other records.
_REFUSED = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_TIMESTAMP,
}
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}


class _TicketDelivery:
    """The delivery callback of every first attempt written for one ticket.

    One callable per ticket rather than a closure and a record object per message: a delivery is then one
    call and two counters; the ticket is settled once per poll for all its acknowledged records (one lock
    instead of one per record). A failed delivery finds its record among the ticket's outputs and goes the
    slow way, which is rare.

    Delivery reports are served by one thread at a time (the writer's poll thread, or the caller of
    ``close`` once that thread has stopped), so the counters need no lock.

    It and its ticket refer to each other until the ticket is done; the tracker then drops the ticket's
    side, so reference counting frees the batch (see ``OffsetTracker._advance_locked``).
    """

    __slots__ = ("_ticket", "_writer", "acked")

    def __init__(self, writer: OutputWriter, ticket: Ticket | None) -> None:
        self._writer = writer
        self._ticket = ticket
        self.acked = 0  # acknowledged since the last settle

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        writer = self._writer
        if err is None:
            topic = msg.topic()
            counts = writer._delivered
            counts[topic] = counts.get(topic, 0) + 1
            if self._ticket is not None:
                if not self.acked:
                    writer._acked.append(self)
                self.acked += 1
            return
        writer._on_failed(_Out(_find(self._ticket, msg), self._ticket, attempts=1), err)


def _find(ticket: Ticket | None, msg: Any) -> OutRecord:
    """The record a delivery report is about: among its ticket's outputs, else rebuilt from the report."""
    topic, key, value = msg.topic(), msg.key(), msg.value()
    for record in (ticket.outputs if ticket is not None else None) or ():
        if record.topic == topic and record.key == key and record.value == value:
            return record
    ts_type, ts = msg.timestamp()
    return OutRecord(topic, value, key, msg.headers(), ts if ts_type and ts > 0 else None)


class OutputWriter:
    def __init__(
        self,
        producer_config: dict[str, Any],
        metrics: Metrics,
        retry: RetryPolicy | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        on_refused: Refused | None = None,
        max_in_flight: int = 20_000,
    ) -> None:
        self._producer = Producer(producer_config)
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._on_fatal = on_fatal
        self._on_refused = on_refused
        self.max_in_flight = max_in_flight
        self._due: list[tuple[float, int, _Out]] = []
        self._due_lock = threading.Lock()
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="writer-poll", daemon=True)
        self.stats = WriterStats()
        # Acknowledged records per topic, cumulative: written by delivery callbacks, published in bulk.
        self._delivered: dict[str, int] = {}
        self._published: dict[str, int] = {}
        self._untracked = _TicketDelivery(self, None)
        self._acked: list[_TicketDelivery] = []  # tickets with acknowledged records not yet settled
        self._poller.start()

    def emit(self, records: list[OutRecord], ticket: Ticket) -> None:
        """Write a batch's outputs under its ticket, then seal it: the one place a stage's records are
        written. Call it from the thread that processes batches (see ``Ticket.sent``)."""
        ticket.outputs = records
        send = self.send
        for r in records:
            send(r.topic, r.value, r.key, r.headers, r.timestamp, ticket, r)
        ticket.tracker.seal(ticket)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp: int | None = None,
        ticket: Ticket | None = None,
        record: OutRecord | None = None,
    ) -> None:
        """Queue one record; ``ticket`` gains a pending output settled by its delivery report. Call it from
        the thread that will seal the ticket (it counts the output there, see ``Ticket.sent``)."""
        if ticket is not None:
            ticket.sent += 1
            report = ticket.delivery
            if report is None:
                report = ticket.delivery = _TicketDelivery(self, ticket)
        else:
            report = self._untracked
        produce = self._producer.produce
        while True:
            try:
                if headers:
                    if timestamp is not None:
                        produce(topic, value, key, on_delivery=report, headers=headers, timestamp=timestamp)
                    else:
                        produce(topic, value, key, on_delivery=report, headers=headers)
                elif timestamp is not None:
                    produce(topic, value, key, on_delivery=report, timestamp=timestamp)
                else:
                    produce(topic, value, key, on_delivery=report)
                return
            except BufferError:
                # The local queue is full: the poll thread drains it; this is the backpressure.
                time.sleep(0.005)
            except KafkaException as exc:
                out = _Out(record or OutRecord(topic, value, key, headers, timestamp), ticket, attempts=1)
                self._on_failed(out, exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else exc)
                return

    def backlogged(self) -> bool:
        """Whether more records are unacknowledged than ``max_in_flight``: the readers then hand over
        nothing until the broker catches up."""
        return len(self._producer) > self.max_in_flight

    def _produce(self, out: _Out) -> None:
        """Send a retry or a replacement; on the poll thread, which serves delivery reports meanwhile."""
        out.attempts += 1
        r = out.record
        kwargs: dict[str, Any] = {"value": r.value, "key": r.key, "on_delivery": self._report(out)}
        if r.headers:
            kwargs["headers"] = r.headers
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        while True:
            try:
                self._producer.produce(r.topic, **kwargs)
                return
            except BufferError:
                if self._stop.is_set():  # closing: the input stays uncommitted and is read again
                    self._give_up(out, OutputLost("the producer's queue is full while the writer stops"))
                    return
                # The local queue is full. This thread is the one that drains it: serve the delivery
                # reports (which frees the queue) instead of sleeping, or it would wait forever.
                self._producer.poll(0.005)
                self._settle_acked()
            except KafkaException as exc:
                self._on_failed(out, exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else exc)
                return

    def _report(self, out: _Out) -> Callable[[KafkaError | None, Any], None]:
        """The callback of a retried or replacement record: it knows its own attempt count."""

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                self._delivered[out.record.topic] = self._delivered.get(out.record.topic, 0) + 1
                if out.ticket is not None:
                    out.ticket.tracker.settle(out.ticket, ok=True)
                return
            self._on_failed(out, err)

        return on_delivery

    def _on_failed(self, out: _Out, err: KafkaError | BaseException) -> None:
        if not isinstance(err, KafkaError):
            self._give_up(out, err)
            return
        if err.fatal():
            self._give_up(out, KafkaException(err))
            if self._on_fatal is not None:
                self._on_fatal(KafkaException(err))
            return
        if err.code() in _REFUSED:
            self._refused(out, err.str(), err.code() in _TOO_LARGE)
            return
        transient = err.retriable() or err.code() in _TRANSIENT
        if transient and self._retry.should_retry(out.attempts):
            self.stats.retries += 1
            self._metrics.retries.labels("produce").inc()
            delay = self._retry.delay_s(out.attempts)
            log.warning(
                "produce to %s failed (%s); retry %d in %.2f s", out.record.topic, err.str(), out.attempts, delay
            )
            with self._due_lock:
                heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), out))
            return
        self._give_up(out, KafkaException(err))

    def _refused(self, out: _Out, reason: str, too_large: bool) -> None:
        """The broker refused this record for good: write its source event's failure instead."""
        self.stats.refused += 1
        record = out.record
        instead = list(self._on_refused(record, reason, too_large)) if self._on_refused is not None else []
        ticket = out.ticket
        if not instead:
            self.stats.unwritable += 1
            self._metrics.records_unwritable.labels(record.topic).inc()
            source = record.source
            where = (
                f"{source.topic()}[{source.partition()}]@{source.offset()}" if source is not None else "unknown source"
            )
            log.error("a record for %s cannot be written anywhere (%s); skipped: %s", record.topic, where, reason)
        elif ticket is not None:
            ticket.tracker.add_pending(ticket, len(instead))
        with self._due_lock:  # sent by the poll thread, the one that produces retries and replacements
            for replacement in instead:
                heapq.heappush(self._due, (0.0, next(self._seq), _Out(replacement, ticket)))
        if ticket is not None:
            ticket.tracker.settle(ticket, ok=True)  # answered: by its failure, or skipped and said so

    def _give_up(self, out: _Out, exc: BaseException) -> None:
        self.stats.lost += 1
        self._metrics.observe_produced(out.record.topic, False)
        log.error("output to %s not written after %d attempt(s): %s", out.record.topic, out.attempts, exc)
        if out.ticket is not None:
            out.ticket.tracker.settle(out.ticket, ok=False, error=OutputLost(f"{out.record.topic}: {exc}"))

    @property
    def produced(self) -> dict[str, int]:
        """Acknowledged records per topic since the start."""
        return dict(self._delivered)

    def publish_counts(self) -> None:
        """Move the acknowledged counts to the metrics (deltas since the last call)."""
        for topic, total in list(self._delivered.items()):
            delta = total - self._published.get(topic, 0)
            if delta > 0:
                self._published[topic] = total
                self._metrics.events_produced.labels(topic).inc(delta)

    def _poll_loop(self) -> None:
        """Serve delivery reports every few milliseconds, all at once, while records are in flight: a poll
        that woke for each report would take the GIL from the event loop hundreds of times a second for a
        callback or two each. With nothing in flight it blocks in the producer's poll instead (GIL
        released) until the next report: a tick every few milliseconds on an idle writer costs little
        CPU, but each one takes a core from the model's intra-op threads, which wait for their slowest
        member (a 5% intruder measured 15% off MiniLM's throughput on 2 cores)."""
        next_publish = 0.0
        while not self._stop.is_set():
            if self._busy():
                if self._stop.wait(_POLL_EVERY_S):
                    break
                self._serve(0.0)
            else:
                self._serve(_IDLE_POLL_S)
            self._between_polls()
            now = time.monotonic()
            if now >= next_publish:
                self.publish_counts()
                next_publish = now + 0.25

    def _busy(self) -> bool:
        """Whether to tick every few milliseconds rather than block in the producer's poll."""
        return self.pending() > 0

    def _between_polls(self) -> None:
        """Work that must run on the thread that serves delivery reports (a transaction's commit)."""

    def _serve(self, timeout_s: float) -> None:
        """Serve delivery reports, settle what they acknowledged, send the retries that are due."""
        self._producer.poll(timeout_s)
        self._settle_acked()
        now = time.monotonic()
        ready: list[_Out] = []
        with self._due_lock:
            while self._due and self._due[0][0] <= now:
                ready.append(heapq.heappop(self._due)[2])
        for out in ready:
            self._produce(out)

    def _settle_acked(self) -> None:
        acked, self._acked = self._acked, []
        for report in acked:
            n, report.acked = report.acked, 0
            ticket = report._ticket
            if ticket is not None and n:
                ticket.tracker.settle(ticket, ok=True, n=n)

    def pending(self) -> int:
        with self._due_lock:
            waiting = len(self._due)
        return len(self._producer) + waiting

    def alive(self) -> bool:
        """Whether the thread that serves delivery reports is running (it stops only at close)."""
        return self._poller.is_alive() or self._stop.is_set()

    def close(self, timeout_s: float = 10.0) -> int:
        """Stop the poll thread, then wait here for outstanding deliveries (retries included); returns how
        many are still pending (their inputs stay uncommitted)."""
        self._stop.set()
        self._poller.join(timeout=2)
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            self._serve(min(0.1, max(0.0, deadline - time.monotonic())))
        self._settle_acked()
        self.publish_counts()
        return self.pending()
