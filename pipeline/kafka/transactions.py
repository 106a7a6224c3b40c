"""Exactly-once: a role's outputs and its consumed offsets, written in one Kafka transaction.

With ``processing_guarantee = "exactly_once"`` each role writes through a transactional producer of its
own (its ``transactional.id`` derived from the worker id and the role, so a restarted worker fences the
one it replaces), and its reader commits no offsets itself: a transaction holds the outputs of the batches
answered within a commit interval, then their offsets are sent to it with the consumer's group metadata
(so a zombie that lost its partitions cannot commit) and it commits. Read with ``read_committed``, the
output, error and dead-letter topics then hold each event's answer once, whatever crashed where: a
transaction that did not commit is invisible, and its inputs are read again from the committed offsets.

The reader decides when to commit (an interval passed, or its agent has nothing more in hand) and asks
this writer; the commit runs on the writer's poll thread, the one thread that serves delivery reports, and
emits wait for it. A transaction that aborts (an output the broker refused, a commit that failed) makes the
reader read its partitions again from their committed offsets: nothing of it is visible. A record the
broker refused for good is remembered, so that when its batch comes again its source event's failure is
written instead, and the batch can commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from pipeline.kafka.offsets import TP, OffsetTracker, Ticket
from pipeline.kafka.records import OutRecord
from pipeline.kafka.retry import RetryPolicy
from pipeline.kafka.writer import _REFUSED, OutputWriter, Refused, _Out
from pipeline.observability.metrics import Metrics

log = logging.getLogger("pipeline.transactions")

_TIMEOUT_S = 30.0
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


def _retrying(call: Callable[[], Any], deadline_s: float = _TIMEOUT_S) -> None:
    """``call`` again while it fails with a retriable error (a coordinator that moves), up to a deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.retriable() and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise


class TransactionAborted(Exception):
    """The transaction did not commit; its outputs are invisible and its inputs must be read again."""


class _Commit:
    """One commit asked of the poll thread by a reader, and its answer."""

    def __init__(self, tracker: OffsetTracker, group_metadata: Any) -> None:
        self.tracker = tracker
        self.group_metadata = group_metadata
        self.done = threading.Event()
        self.offsets: dict[TP, int] = {}
        self.error: BaseException | None = None
        self.abort = False


class TransactionalWriter(OutputWriter):
    def __init__(
        self,
        producer_config: dict[str, Any],
        metrics: Metrics,
        *,
        transactional_id: str,
        transaction_timeout_ms: int = 10_000,
        retry: RetryPolicy | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        on_refused: Refused | None = None,
        max_in_flight: int = 20_000,
    ) -> None:
        config = {
            **producer_config,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": transaction_timeout_ms,
        }
        self._txn_lock = threading.Lock()  # emits against a commit
        self._requests: list[_Commit] = []
        self._requests_lock = threading.Lock()
        self._records = 0  # written in the open transaction
        self._abort_reason: str | None = None
        self._refused_sources: set[tuple[str | None, int | None, int | None, str]] = set()
        super().__init__(config, metrics, retry, on_fatal=on_fatal, on_refused=on_refused, max_in_flight=max_in_flight)
        self._config = config
        self.transactional_id = transactional_id
        # Fences any earlier producer with this id (a crashed worker's) and aborts its open transaction.
        _retrying(lambda: self._producer.init_transactions(_TIMEOUT_S), deadline_s=4 * _TIMEOUT_S)
        self._producer.begin_transaction()

    # -- the agent's side ---------------------------------------------------------------------------

    def emit(self, records: list[OutRecord], ticket: Ticket) -> None:
        """Write a batch's outputs into the open transaction, then seal its ticket. A batch voided by an
        aborted transaction writes nothing: it is read again."""
        if self._refused_sources:
            records = self._instead_of_refused(records)
        with self._txn_lock:
            if not ticket.live:
                return
            self._records += len(records)
            super().emit(records, ticket)

    def _instead_of_refused(self, records: list[OutRecord]) -> list[OutRecord]:
        out: list[OutRecord] = []
        for r in records:
            source = r.source
            key = (source.topic(), source.partition(), source.offset(), r.topic) if source is not None else None
            if key is not None and key in self._refused_sources and self._on_refused is not None:
                out.extend(self._on_refused(r, "refused by the broker in an earlier attempt", False))
            else:
                out.append(r)
        return out

    # -- the reader's side --------------------------------------------------------------------------

    def commit(self, tracker: OffsetTracker, group_metadata: Any) -> dict[TP, int]:
        """Commit the open transaction with the offsets its acknowledged batches allow; returns them.
        Raises :class:`TransactionAborted` when it could not commit (read the partitions again)."""
        request = _Commit(tracker, group_metadata)
        self._submit(request)
        if request.error is not None:
            raise request.error
        return request.offsets

    def _submit(self, request: _Commit) -> None:
        """Run ``request`` on the poll thread, or here once that thread has stopped (the writer is closing:
        no other thread serves delivery reports any more)."""
        with self._requests_lock:
            self._requests.append(request)
        deadline = time.monotonic() + _TIMEOUT_S * 2
        while not request.done.wait(0.2):
            if not self._poller.is_alive():
                self._between_polls()
            if time.monotonic() > deadline:
                request.error = TransactionAborted("the commit did not finish in time")
                return

    def abort(self, tracker: OffsetTracker) -> None:
        """Abort the open transaction (its reader lost partitions: their outputs must not be committed)."""
        request = _Commit(tracker, None)
        request.abort = True
        self._submit(request)

    def in_transaction(self) -> int:
        """Records written in the open transaction."""
        return self._records

    # -- the poll thread ----------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self._records > 0 or bool(self._requests) or super()._busy()

    def _between_polls(self) -> None:
        with self._requests_lock:
            requests, self._requests = self._requests, []
        for request in requests:
            try:
                request.offsets = self._commit_now(request)
            except BaseException as exc:
                request.error = exc
            finally:
                request.done.set()

    def _commit_now(self, request: _Commit) -> dict[TP, int]:
        with self._txn_lock:
            if request.abort:
                self._producer.flush(_TIMEOUT_S)
                self._settle_acked()
                self._abort(request.tracker, "its reader lost partitions")
            left = self._producer.flush(_TIMEOUT_S)  # serves the delivery reports here, on this thread
            self._settle_acked()
            if left:
                self._abort_reason = self._abort_reason or f"{left} record(s) not acknowledged in time"
            if self._abort_reason is not None:
                self._abort(request.tracker)
            offsets = request.tracker.take_commits()
            if not offsets and not self._records:
                return {}
            try:
                if offsets:
                    positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
                    self._producer.send_offsets_to_transaction(positions, request.group_metadata, _TIMEOUT_S)
                self._commit_transaction()
            except KafkaException as exc:
                self._abort(request.tracker, f"the commit failed: {exc}")
            self._records = 0
            try:
                self._producer.begin_transaction()
            except KafkaException as exc:
                log.error("transaction %s: %s; a new producer takes over", self.transactional_id, exc)
                self._new_producer()
            return offsets

    def _commit_transaction(self) -> None:
        _retrying(lambda: self._producer.commit_transaction(_TIMEOUT_S))

    def _abort(self, tracker: OffsetTracker, reason: str | None = None) -> None:
        reason = reason or self._abort_reason or "aborted"
        self._abort_reason = None
        log.error("transaction %s aborted (%s); its batches are read again", self.transactional_id, reason)
        self._metrics.retries.labels("transaction").inc()
        tracker.kill_all()  # nothing of the aborted transaction is committed; late emits of it write nothing
        try:
            _retrying(lambda: self._producer.abort_transaction(_TIMEOUT_S))
            self._records = 0
            self._producer.begin_transaction()
        except KafkaException as exc:
            # The producer cannot abort (its coordinator is gone, or it is fenced): a new one with the same
            # transactional id takes over, which aborts whatever the old one left open.
            log.error("transaction %s: %s; a new producer takes over", self.transactional_id, exc)
            self._new_producer()
        raise TransactionAborted(reason)

    def _new_producer(self) -> None:
        """Replace the producer (on the poll thread, the transaction lock held): its unacknowledged records
        belong to batches already voided, which are read again."""
        self._producer = Producer(self._config)
        self._records = 0
        try:
            _retrying(lambda: self._producer.init_transactions(_TIMEOUT_S), deadline_s=4 * _TIMEOUT_S)
            self._producer.begin_transaction()
        except KafkaException as exc:
            if self._on_fatal is not None:
                self._on_fatal(exc)

    def close(self, timeout_s: float = 10.0) -> int:
        """Stop, serve what is still asked, then abort what was never committed: its inputs are read again."""
        left = super().close(timeout_s)
        self._between_polls()
        if self._records:
            try:
                self._producer.abort_transaction(_TIMEOUT_S)
            except KafkaException as exc:
                log.warning("transaction %s: abort at close failed: %s", self.transactional_id, exc)
            self._records = 0
        return left

    # -- failures in a transaction ------------------------------------------------------------------

    def _on_failed(self, out: _Out, err: KafkaError | BaseException) -> None:
        """In a transaction any failed record dooms it: it aborts at the next commit. A record refused for
        good is remembered, so its batch writes the source event's failure instead next time."""
        if isinstance(err, KafkaError) and err.fatal():
            super()._on_failed(out, err)
            return
        source = out.record.source
        if isinstance(err, KafkaError) and source is not None and self._is_refusal(err):
            self._refused_sources.add((source.topic(), source.partition(), source.offset(), out.record.topic))
        text = err.str() if isinstance(err, KafkaError) else str(err)
        reason = f"a record for {out.record.topic} failed: {text}"
        # A record purged by an abort belongs to the transaction that abort ended: its report, served after
        # the next transaction began, must not doom that one too (each abort would purge the next's records
        # and doom the one after, for good).
        if not (isinstance(err, KafkaError) and err.code() in _PURGED):
            self._abort_reason = self._abort_reason or reason
        if out.ticket is not None:
            out.ticket.tracker.settle(out.ticket, ok=False, error=TransactionAborted(self._abort_reason or reason))

    @staticmethod
    def _is_refusal(err: KafkaError) -> bool:
        return err.code() in _REFUSED
