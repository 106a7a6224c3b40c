"""A micro-batch: what the reader hands an agent, and the policy that closes it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confluent_kafka import Message

    from pipeline.processors.offsets import Ticket


@dataclass(frozen=True)
class BatchPolicy:
    """Close a batch at ``max_events`` or ``max_wait_ms`` after its first event, whichever comes first."""

    max_events: int
    max_wait_ms: int

    def __post_init__(self) -> None:
        if self.max_events < 1 or self.max_wait_ms < 0:
            raise ValueError("a batch needs max_events >= 1 and max_wait_ms >= 0")

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

    messages: list[Message]
    ticket: Ticket
    received_at: float = field(default_factory=time.time)

    def __len__(self) -> int:
        return len(self.messages)
