"""Which offsets may be committed: only those below which every record's outputs are acknowledged.

A ``Ticket`` follows one batch: the reader opens it before the hand-off, the agent adds one pending
output per record it writes and seals it when it has written them all, the producer's delivery reports
settle them. Per partition, batches complete in any order but are committed in order: the committable
offset is the end of the longest run of completed batches at the front of that partition's queue.
A failed batch is never committed past; its partitions are handed back to the reader to rewind.

One tracker per reader (its consumer group commits only its own partitions); a ticket knows its tracker,
so the writer settles it without knowing which reader it came from. Thread-safe: the reader thread, the
event loop and the producer's delivery thread all call in.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TP = tuple[str, int]


@dataclass(eq=False)
class Ticket:
    id: int
    # Per partition: (first offset, last offset) of this batch's records.
    ranges: dict[TP, tuple[int, int]]
    tracker: OffsetTracker = field(repr=False)
    pending: int = 0
    # Outputs written and not yet counted in ``pending``: the agent counts them here without the lock
    # (only its thread writes them) and ``seal`` adds them. Deliveries may settle first; ``pending`` is
    # then below zero until the seal, and a ticket is never done before it is sealed.
    sent: int = 0
    sealed: bool = False
    failed: bool = False
    live: bool = True
    error: BaseException | None = field(default=None, repr=False)
    delivery: Any = field(default=None, repr=False)  # the writer's delivery callback for this batch
    outputs: Any = field(default=None, repr=False)  # the records emitted for it, to find a refused one

    @property
    def done(self) -> bool:
        return self.sealed and self.pending == 0 and not self.failed


class OffsetTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[TP, deque[Ticket]] = {}
        self._commit: dict[TP, int] = {}  # next offset to commit per partition (not yet committed)
        self._failed: list[Ticket] = []
        self._next_id = 0
        self._changed = threading.Condition(self._lock)

    def open(self, ranges: dict[TP, tuple[int, int]]) -> Ticket:
        with self._lock:
            self._next_id += 1
            ticket = Ticket(self._next_id, dict(ranges), self)
            for tp in ranges:
                self._queues.setdefault(tp, deque()).append(ticket)
            return ticket

    def add_pending(self, ticket: Ticket, n: int = 1) -> None:
        with self._lock:
            ticket.pending += n

    def settle(self, ticket: Ticket, ok: bool = True, error: BaseException | None = None, n: int = 1) -> None:
        """``n`` pending outputs are acknowledged (ok) or one is lost for good (not ok: the batch fails)."""
        with self._lock:
            ticket.pending -= n
            if not ok:
                self._fail_locked(ticket, error)
            self._advance_locked(ticket)

    def seal(self, ticket: Ticket) -> None:
        """The agent has written every output the batch will have."""
        with self._lock:
            ticket.pending += ticket.sent
            ticket.sent = 0
            ticket.sealed = True
            self._advance_locked(ticket)

    def fail(self, ticket: Ticket, error: BaseException | None = None) -> None:
        with self._lock:
            self._fail_locked(ticket, error)
            self._changed.notify_all()

    def _fail_locked(self, ticket: Ticket, error: BaseException | None) -> None:
        if not ticket.failed:
            ticket.failed = True
            ticket.error = error
            if ticket.live:
                self._failed.append(ticket)
                self._stop_later_locked(ticket)

    def _stop_later_locked(self, ticket: Ticket) -> None:
        """Batches after a failed one on its partitions must not be processed: they would be answered
        before it is read again, out of order. The reader rewinds to the failed batch; these come again."""
        for tp in ticket.ranges:
            later = False
            for queued in self._queues.get(tp, ()):
                if queued is ticket:
                    later = True
                elif later:
                    queued.live = False

    def _advance_locked(self, ticket: Ticket) -> None:
        if not ticket.done:
            return
        # A done ticket gets no more delivery reports, so it needs neither its callback nor its outputs.
        # The callback refers back to the ticket: left in place, the pair is a reference cycle that only the
        # cyclic collector frees, and under a backlog (tickets live long enough to reach its older
        # generations) it kept whole batches of outputs and source records alive long after their commit.
        ticket.delivery = ticket.outputs = None
        for tp in ticket.ranges:
            queue = self._queues.get(tp)
            while queue and queue[0].done:
                head = queue.popleft()
                if head.live:
                    self._commit[tp] = head.ranges[tp][1] + 1
        self._changed.notify_all()

    def take_commits(self) -> dict[TP, int]:
        """Offsets that became committable since the last call."""
        with self._lock:
            out, self._commit = self._commit, {}
            return out

    def take_failures(self) -> list[Ticket]:
        with self._lock:
            out, self._failed = self._failed, []
            return out

    def rewind_point(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Drop every ticket queued on ``tps``; returns where to seek: the first unsettled offset.

        A dropped ticket may also hold records of other partitions; those are rewound too (to the
        dropped ticket's first record there, or an earlier unsettled one), or they would wait forever
        behind a batch that no one processes.
        """
        with self._lock:
            points: dict[TP, int] = {}
            todo = list(tps)
            while todo:
                tp = todo.pop()
                queue = self._queues.pop(tp, None)
                if not queue:
                    continue
                points[tp] = queue[0].ranges[tp][0]
                for ticket in queue:
                    ticket.live = False
                    todo.extend(other for other in ticket.ranges if other in self._queues)
            self._changed.notify_all()
            return points

    def discard(self, ticket: Ticket) -> None:
        """A batch that was never handed over: forget it without committing anything of it."""
        with self._lock:
            ticket.live = False
            for tp in ticket.ranges:
                queue = self._queues.get(tp)
                if queue is not None and ticket in queue:
                    queue.remove(ticket)
            self._changed.notify_all()

    def emitted_any(self) -> bool:
        """Whether any open batch has written its outputs (sealed), or any offset awaits its commit: what a
        transaction would hold."""
        with self._lock:
            return bool(self._commit) or any(t.live and t.sealed for q in self._queues.values() for t in q)

    def kill_all(self) -> None:
        """Every open batch is void (its transaction aborted): an agent that still has one writes nothing
        of it; the reader reads the partitions again from their committed offsets."""
        with self._lock:
            for queue in self._queues.values():
                for ticket in queue:
                    ticket.live = False
            self._commit.clear()
            self._changed.notify_all()

    def in_flight_any(self) -> bool:
        """Whether any batch is open (handed over and not yet committable)."""
        with self._lock:
            return any(any(t.live for t in queue) for queue in self._queues.values())

    def in_flight(self, tps: Iterable[TP]) -> int:
        with self._lock:
            return sum(len(self._queues.get(tp, ())) for tp in tps)

    def wait_idle(self, tps: Iterable[TP], timeout_s: float) -> bool:
        """Block until no live batch of ``tps`` is in flight (True) or the timeout passes (False)."""
        wanted = list(tps)
        with self._changed:
            return self._changed.wait_for(
                lambda: all(not any(t.live and not t.failed for t in self._queues.get(tp, ())) for tp in wanted),
                timeout=timeout_s,
            )

    def forget(self, tps: Iterable[TP]) -> None:
        """The partitions are gone (revoked): nothing of theirs is committed or waited for any more.

        A ticket that also holds records of partitions we keep stays live, so those still commit in order
        (its revoked records may be processed twice: at least once, never lost).
        """
        gone = set(tps)
        with self._lock:
            for tp in gone:
                for ticket in self._queues.pop(tp, ()):
                    if all(other in gone for other in ticket.ranges):
                        ticket.live = False
                self._commit.pop(tp, None)
            self._changed.notify_all()
