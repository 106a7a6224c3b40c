"""The output writer: one idempotent producer (acks=all) whose delivery reports settle tickets.

A delivery report is the broker's acknowledgement; only then does a record's output count for the commit
rule. Transient failures (a timed-out or retriable produce) are sent again with exponential backoff up to
the retry policy's limit; past it, or on a permanent error, the ticket fails, so its batch is rewound and
never committed past.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.kafka.offsets import Ticket
from pipeline.kafka.records import Headers, OutRecord
from pipeline.kafka.retry import RetryPolicy
from pipeline.observability.metrics import Metrics

log = logging.getLogger("pipeline.writer")


# How often the writer's thread serves delivery reports while records are in flight (they settle tickets;
# only commits wait for them), and how long it may block in the producer's poll when none are.
_POLL_EVERY_S = 0.005
_IDLE_POLL_S = 0.25


class OutputLost(Exception):
    """A record could not be written within the retry policy."""


@dataclass
class _Out:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: Headers | None
    timestamp: int | None
    ticket: Ticket | None
    attempts: int = 0


@dataclass
class WriterStats:
    retries: int = 0
    lost: int = 0


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


class _TicketDelivery:
    """The delivery callback of every first attempt written for one ticket.

    One callable per ticket rather than a closure and a record object per message: a delivery is then one
    call and two counters; the ticket is settled once per poll for all its acknowledged records (one lock
    instead of one per record). A failed delivery rebuilds its record from the report's message (topic,
    value, key, headers, timestamp) and goes the retry way, which is rare and may be slower.

    Delivery reports are served by one thread at a time (the writer's poll thread, or the caller of
    ``close`` once that thread has stopped), so the counters need no lock.
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
        ts_type, ts = msg.timestamp()
        out = _Out(
            msg.topic(),
            msg.value(),
            msg.key(),
            msg.headers(),
            ts if ts_type and ts > 0 else None,
            self._ticket,
            attempts=1,
        )
        writer._on_failed(out, err)


class OutputWriter:
    def __init__(
        self,
        producer_config: dict[str, Any],
        metrics: Metrics,
        retry: RetryPolicy | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._producer = Producer(producer_config)
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._on_fatal = on_fatal
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
        send = self.send
        for r in records:
            send(r.topic, r.value, r.key, r.headers, r.timestamp, ticket)
        ticket.tracker.seal(ticket)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        timestamp: int | None = None,
        ticket: Ticket | None = None,
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
                # The local queue is full: the poller drains it; this is the backpressure.
                time.sleep(0.005)
            except KafkaException as exc:
                self._give_up(_Out(topic, value, key, headers, timestamp, ticket, attempts=1), exc)
                return

    def _produce(self, out: _Out) -> None:
        out.attempts += 1
        kwargs: dict[str, Any] = {"value": out.value, "key": out.key, "on_delivery": self._report(out)}
        if out.headers:
            kwargs["headers"] = out.headers
        if out.timestamp is not None:
            kwargs["timestamp"] = out.timestamp
        while True:
            try:
                self._producer.produce(out.topic, **kwargs)
                return
            except BufferError:
                # The local queue is full: the poller drains it; this is the backpressure.
                time.sleep(0.005)
            except KafkaException as exc:
                self._give_up(out, exc)
                return

    def _report(self, out: _Out) -> Callable[[KafkaError | None, Any], None]:
        """The callback of a retried record: it knows its own attempt count."""

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                self._delivered[out.topic] = self._delivered.get(out.topic, 0) + 1
                if out.ticket is not None:
                    out.ticket.tracker.settle(out.ticket, ok=True)
                return
            self._on_failed(out, err)

        return on_delivery

    def _on_failed(self, out: _Out, err: KafkaError) -> None:
        if err.fatal():
            self._give_up(out, KafkaException(err))
            if self._on_fatal is not None:
                self._on_fatal(KafkaException(err))
            return
        transient = err.retriable() or err.code() in _TRANSIENT
        if transient and self._retry.should_retry(out.attempts):
            self.stats.retries += 1
            self._metrics.retries.labels("produce").inc()
            delay = self._retry.delay_s(out.attempts)
            log.warning("produce to %s failed (%s); retry %d in %.2f s", out.topic, err.str(), out.attempts, delay)
            with self._due_lock:
                heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), out))
            return
        self._give_up(out, KafkaException(err))

    def _give_up(self, out: _Out, exc: BaseException) -> None:
        self.stats.lost += 1
        self._metrics.observe_produced(out.topic, False)
        log.error("output to %s lost after %d attempt(s): %s", out.topic, out.attempts, exc)
        if out.ticket is not None:
            out.ticket.tracker.settle(out.ticket, ok=False, error=OutputLost(f"{out.topic}: {exc}"))

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
            if self.pending():
                if self._stop.wait(_POLL_EVERY_S):
                    break
                self._serve(0.0)
            else:
                self._serve(_IDLE_POLL_S)
            now = time.monotonic()
            if now >= next_publish:
                self.publish_counts()
                next_publish = now + 0.25

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
