"""Which partitions a reader holds, and why: paused on the client, with what was already read or fetched
for them dropped, so nothing of a held partition is handed over.

Three reasons, computed on every turn of the reader's loop (the client is asked only when the held set
changes): the bulk reader holds its partitions while the priority lane (:mod:`pipeline.kafka.lane`) has
records; a rewound batch's partitions wait out their backoff; the reader's gate (the model's circuit open,
the writer's backlog full) holds every partition. Only the last two are reasons to report the worker not
ready; the lane is ordinary operation.

A resume alone would leave a partition unread for up to a second: it changes no fetch state, so it wakes
nothing, and the client's broker thread, with nothing to fetch while everything was paused, looks again
only at its next wake-up (bench/README.md, 2026-12-07 evening). A seek does change it, so every seek of a
reader's partitions goes through :meth:`Holds.seek`, and a release seeks each partition once more to where
it is read from anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, Message, TopicPartition

from pipeline.kafka.lane import LaneSignal
from pipeline.kafka.offsets import TP

Gate = Callable[[], str | None]
"""Why every partition must be held right now (the model's circuit is open, ...), or None."""

BACKING_OFF = "a batch is read again after a backoff"


class Holds:
    def __init__(self, gate: Gate | None = None, yields_to: LaneSignal | None = None) -> None:
        self.gate = gate
        self.yields_to = yields_to  # the bulk reader's: the lane whose records go first
        self.until: dict[TP, float] = {}  # partitions waiting out a backoff, and until when
        self.paused: set[TP] = set()  # what the client has paused now
        self.sought: dict[TP, TopicPartition] = {}  # each held partition's last seek: where it is read from
        self.reason: str | None = None  # why something is held on purpose (None: nothing, or the lane)

    def back_off(self, tps: set[TP] | list[TP], until: float) -> None:
        for tp in tps:
            self.until[tp] = until

    def waiting(self) -> bool:
        """Whether something is held that a short poll would see released soon."""
        return bool(self.until) or (self.yields_to is not None and self.yields_to.busy())

    def apply(self, consumer: Consumer, assigned: set[TP], pending: list[Message]) -> list[Message]:
        """Pause what must be held now and resume what no longer must; returns ``pending`` without the
        records of newly held partitions."""
        reason = self.gate() if self.gate is not None else None
        if reason is not None:
            desired = set(assigned)
        else:
            if self.until:
                now = time.monotonic()
                for tp in [tp for tp, until in self.until.items() if until <= now]:
                    del self.until[tp]
            desired = {tp for tp in self.until if tp in assigned}
            if desired:
                reason = BACKING_OFF
            if self.yields_to is not None and self.yields_to.busy():
                desired.update(assigned)
        self.reason = reason
        if desired == self.paused:
            return pending
        hold = desired - self.paused
        release = self.paused - desired
        if hold:
            pending = self._hold(consumer, hold, pending)
        if release:
            consumer.resume([TopicPartition(t, p) for t, p in release])
            for tp in release:  # the seek that wakes the fetcher (see the module's docstring)
                if (sought := self.sought.pop(tp, None)) is not None:
                    consumer.seek(sought)
        self.paused = desired
        return pending

    def seek(self, consumer: Consumer, to: TopicPartition) -> None:
        """Read ``to``'s partition again from its offset; a release seeks there once more."""
        consumer.seek(to)
        self.sought[(to.topic, to.partition)] = to

    def release(self, tps: set[TP]) -> None:
        """The partitions are gone: nothing of theirs is held any more."""
        for tp in tps:
            self.until.pop(tp, None)
            self.sought.pop(tp, None)
        self.paused -= tps

    def clear(self) -> None:
        self.until.clear()
        self.paused.clear()
        self.sought.clear()

    def _hold(self, consumer: Consumer, tps: set[TP], pending: list[Message]) -> list[Message]:
        """Pause ``tps`` and drop what was read or fetched for them: records already fetched would still
        come out of consume(), so each partition is sought back to its first dropped record (or its own
        position), from where it is fetched again on resume. Order within a partition never changes."""
        first: dict[TP, int] = {}
        keep: list[Message] = []
        for msg in pending:
            tp = (msg.topic(), msg.partition())
            if tp in tps:
                first.setdefault(tp, msg.offset())
            else:
                keep.append(msg)
        partitions = [TopicPartition(t, p) for t, p in tps]
        consumer.pause(partitions)
        for tp in consumer.position([p for p in partitions if (p.topic, p.partition) not in first]):
            if tp.offset >= 0:  # else sought since it was last read (a rewind), and that seek stands
                self.seek(consumer, tp)
        for (topic, partition), offset in first.items():
            self.seek(consumer, TopicPartition(topic, partition, offset))
        return keep
