"""The batching rule, in one place: when a role's reader closes a micro-batch and hands it to the agent.

A batch closes at N events, or at once when the agent is idle (batching is for a busy agent; an idle one
would only wait), or W ms after its first event while no batch waits in the agent's queue. A batch closed
at W behind one already waiting would only wait too, and a slow model would then run many small batches
one after the other: the open one keeps taking records instead (up to N) and goes as soon as the queue has
room. Each role carries its own :class:`BatchPolicy`. The inference role's N follows its model
(:class:`ModelPaced`): a fast model gets items of several model batches, so one hand-off, one ticket and
one commit serve hundreds of events; a slow one gets one model batch per item, so the priority lane never
waits behind a long item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pipeline.kafka.offsets import Ticket


class InRecord(Protocol):
    """What the stages read of a consumed record (confluent-kafka's ``Message`` is one)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class ModelPaced:
    """N for the inference role: as many model batches as typically run within ``budget_s`` (at least one,
    at most ``max_events`` worth), from the model's moving-average batch time (``typical_s``)."""

    model_batch: int
    budget_s: float
    max_events: int
    typical_s: Callable[[], float]

    def __call__(self) -> int:
        typical = self.typical_s()
        if not typical > 0 or typical == float("inf"):
            return self.model_batch
        most = max(1, self.max_events // self.model_batch)
        return self.model_batch * max(1, min(int(self.budget_s / typical), most))


@dataclass(frozen=True)
class BatchPolicy:
    """Close a batch at ``max_events`` (or what ``size`` says, asked before each poll) or ``max_wait_ms``
    after its first event, whichever comes first, the deadline only while no batch waits for the agent;
    hand it over at once when the agent is idle."""

    max_events: int
    max_wait_ms: int
    size: Callable[[], int] | None = None

    def __post_init__(self) -> None:
        if self.max_events < 1 or self.max_wait_ms < 0:
            raise ValueError("a batch needs max_events >= 1 and max_wait_ms >= 0")

    def limit(self) -> int:
        """N for the next batch."""
        return max(1, self.size()) if self.size is not None else self.max_events

    @staticmethod
    def closes(remaining_s: float, agent_idle: bool, waiting: int) -> bool:
        """Whether an open (not full) batch goes to the agent now: at once to an idle agent; once its
        deadline passed (``remaining_s`` 0) only while no batch waits in the agent's queue (``waiting``)."""
        return agent_idle or (remaining_s <= 0 and waiting == 0)

    def remaining_s(self, first_at: float | None, size: int, now: float, max_events: int | None = None) -> float:
        """Seconds left before the open batch must close (0: close now); ``max_events`` overrides N."""
        if size >= (max_events or self.max_events):
            return 0.0
        if first_at is None:
            return self.max_wait_ms / 1000.0 if self.max_wait_ms else 0.1
        return max(0.0, first_at + self.max_wait_ms / 1000.0 - now)


@dataclass
class Batch:
    """Raw records in consumption order, with the ticket that tracks their outputs."""

    messages: list[InRecord]
    ticket: Ticket
    received_at: float = field(default_factory=time.time)

    def __len__(self) -> int:
        return len(self.messages)


class HandOff(Protocol):
    """Where a reader's batches go: the agent's bounded queue. Its answers (``idle``, ``waiting``) are what
    :meth:`BatchPolicy.closes` decides on."""

    def put(self, batch: Batch, stopping: Callable[[], bool]) -> bool:
        """Block until the agent's queue took the batch (the backpressure that bounds memory); False when
        ``stopping()`` turned true first or the agent is gone (the batch is then dropped, never committed)."""
        ...

    def idle(self) -> bool:
        """Whether the agent has nothing queued or in hand."""
        ...

    def waiting(self) -> int:
        """How many batches wait in the agent's queue (handed over, not yet taken)."""
        ...
