"""How a reader commits what its tracker allows: the consumer's own offset commits (at least once), or the
role's transactions (exactly once). The reader asks on every turn of its loop; each strategy decides
whether it is time, and returns the offsets that just became committed (the hot path's progress).

At least once, the offsets below which every output is acknowledged are committed asynchronously at most
every ``interval_s`` (synchronously at revocation and shutdown); a failed commit stays queued and goes
again, and is only logged once per failing streak. Exactly once, the role's transaction commits with those
offsets once an interval has passed since its first batch, at once when the agent has nothing more in
hand (a quiet stream is not held back by the interval), and always when asked; an abort raises
:class:`~pipeline.kafka.transactions.TransactionAborted` and the reader reads its partitions again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.kafka.offsets import TP, OffsetTracker
from pipeline.kafka.transactions import TransactionalWriter

log = logging.getLogger("pipeline.reader")


class Commits(Protocol):
    commits: int  # how many commits went through, for the reader's stats

    def commit(self, consumer: Consumer, sync: bool, agent_idle: bool) -> dict[TP, int]:
        """Commit if it is time (always when ``sync``); the offsets that became committed or committable."""
        ...

    def waiting(self) -> bool:
        """Whether outputs are invisible until a commit (the reader then polls in short slices)."""
        ...

    def release(self, tps: set[TP], lost: bool) -> bool:
        """The partitions are gone (``lost``: without a revocation); whether the ones kept must be read
        again from their commits."""
        ...


class OffsetCommits:
    """At least once: the consumer commits the offsets whose outputs the broker acknowledged."""

    def __init__(
        self, role: str, tracker: OffsetTracker, interval_s: float, on_fatal: Callable[[KafkaError], None]
    ) -> None:
        self.role = role
        self._tracker = tracker
        self._interval_s = interval_s
        self._on_fatal = on_fatal
        self._to_commit: dict[TP, int] = {}  # committable, not yet confirmed by the broker
        self._retry_at = 0.0
        self._failing = False
        self.commits = 0

    def commit(self, consumer: Consumer, sync: bool, agent_idle: bool) -> dict[TP, int]:
        taken = self._tracker.take_commits()
        for tp, offset in taken.items():
            if offset > self._to_commit.get(tp, -1):
                self._to_commit[tp] = offset
        now = time.monotonic()
        if not self._to_commit or (not sync and now < self._retry_at):
            return taken
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._to_commit.items()]
        try:
            if sync:
                self.on_commit(None, consumer.commit(offsets=offsets, asynchronous=False) or [])
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
                self._retry_at = now + self._interval_s
        except KafkaException as exc:
            # Nothing is lost: the offsets stay queued and are committed again, or the records are
            # processed again after a restart.
            log.warning("%s reader: commit failed: %s", self.role, exc)
            self._retry_at = now + 1.0
        return taken

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's commit callback: drop what the broker stored; a failed or newer offset stays
        queued for the next commit."""
        if err is not None:
            if err.fatal():
                self._on_fatal(err)
            elif not self._failing:
                log.warning("%s reader: commits fail (%s); retrying every second", self.role, err.str())
            self._failing = True
            self._retry_at = time.monotonic() + 1.0
            return
        if self._failing:
            log.info("%s reader: commits go through again", self.role)
            self._failing = False
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if tp.error is None and self._to_commit.get(key, -1) <= tp.offset:
                self._to_commit.pop(key, None)
        self.commits += 1

    def waiting(self) -> bool:
        return False

    def release(self, tps: set[TP], lost: bool) -> bool:
        for tp in tps:
            self._to_commit.pop(tp, None)
        return False


class TransactionCommits:
    """Exactly once: the role's transaction commits its outputs with the offsets they allow."""

    def __init__(self, role: str, tracker: OffsetTracker, writer: TransactionalWriter, interval_s: float) -> None:
        self.role = role
        self._tracker = tracker
        self._writer = writer
        self._interval_s = interval_s
        self._since: float | None = None  # when the reader first saw a batch of the open transaction
        self.commits = 0

    def commit(self, consumer: Consumer, sync: bool, agent_idle: bool) -> dict[TP, int]:
        if not self._tracker.emitted_any():
            self._since = None
            if not (sync and self._writer.in_transaction()):
                return {}
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if not (sync or now - self._since >= self._interval_s or agent_idle):
            return {}
        self._since = None
        offsets = self._writer.commit(self._tracker, consumer.consumer_group_metadata())
        if offsets:
            self.commits += 1
        return offsets

    def waiting(self) -> bool:
        return self._since is not None

    def release(self, tps: set[TP], lost: bool) -> bool:
        """Lost, not revoked: the open transaction may hold their outputs, which must not commit; it
        aborts, and the reader reads the partitions it keeps again from their commits."""
        if not lost:
            return False
        self._writer.abort(self._tracker)
        self._since = None
        return True
