"""The safety net under every stage: an exception nobody expected fails the events that raise it, alone.

The stages catch what they know per event (a record that does not decode, a hook that raises, a result
that does not encode). Anything else that escapes a batch says nothing about which event caused it, so the
batch is split in halves and each half processed again, down to single events: an event that still
raises becomes its own error event and dead letter (stage and code ``UNKNOWN``: nothing more specific is
known; its dead letter carries the exception), and every other event is answered once. Stages return their
records instead of writing them, so a half processed again has written nothing before. A cause outside
the events (:class:`~pipeline.errors.ExternalCause`) is not split: the whole batch is read again later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from pipeline.errors import ExternalCause
from pipeline.kafka.batching import Batch, InRecord
from pipeline.kafka.records import OutRecord
from pipeline.observability.metrics import Metrics
from pipeline.serde import ErrorCode, Failure, Stage
from pipeline.stages.failures import FailureRouter

log = logging.getLogger("pipeline.isolation")


class BatchStage(Protocol):
    role: str

    async def process(self, batch: Batch) -> list[OutRecord]: ...


@dataclass
class Isolated:
    """A stage whose unexpected exceptions are narrowed down to the events that raise them."""

    stage: BatchStage
    failures: FailureRouter
    metrics: Metrics

    @property
    def role(self) -> str:
        return self.stage.role

    async def process(self, batch: Batch) -> list[OutRecord]:
        try:
            return await self.stage.process(batch)
        except ExternalCause:
            raise
        except Exception as exc:
            log.warning(
                "%s: batch %d of %d events raised %s: %s; splitting it to find the events that cause it",
                self.role,
                batch.ticket.id,
                len(batch),
                type(exc).__name__,
                exc,
            )
            return await self._split(batch, exc)

    async def _split(self, batch: Batch, exc: Exception) -> list[OutRecord]:
        if len(batch.messages) == 1:
            return self._fail_alone(batch.messages[0], batch, exc)
        mid = len(batch.messages) // 2
        out: list[OutRecord] = []
        for half in (batch.messages[:mid], batch.messages[mid:]):
            part = Batch(half, batch.ticket, batch.received_at)
            try:
                out.extend(await self.stage.process(part))
            except ExternalCause:
                raise
            except Exception as again:
                out.extend(await self._split(part, again))
        return out

    def _fail_alone(self, msg: InRecord, batch: Batch, exc: Exception) -> list[OutRecord]:
        self.metrics.isolated.labels(self.role).inc()
        failure = Failure(
            Stage.UNKNOWN,
            ErrorCode.UNKNOWN,
            f"{self.role} stage raised {type(exc).__name__} on this event alone: {exc}",
            exception=exc,
        )
        return list(self.failures.route(msg, failure, f"{self.role}-{batch.ticket.id}"))
