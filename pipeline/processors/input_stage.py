"""The input agent's work on one batch: decode and validate each record, route it.

A valid request goes to the inference topic (or the priority lane) with its value bytes, headers and
timestamp unchanged, keyed by its upstream key or, when it has none, its ``event_id``. An invalid one goes
to error and dead-letter. Nothing here raises for a bad record; an unexpected exception fails the batch,
which the reader rewinds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pipeline.observability.metrics import BATCH_SECONDS
from pipeline.processors.batch import Batch
from pipeline.processors.events import EventCodecs
from pipeline.processors.offsets import OffsetTracker
from pipeline.processors.routing import Failed, FailureRouter
from pipeline.processors.writer import OutputWriter


@dataclass
class InputStage:
    codecs: EventCodecs
    writer: OutputWriter
    tracker: OffsetTracker
    router: FailureRouter
    inference_topic: str
    priority_topic: str
    known_models: frozenset[str]
    default_model: str
    role: str = "input"
    # Events between two yields to the event loop: a long batch must not keep the inference agent (and
    # the readers' hand-offs) waiting; the inference batch size keeps both agents in step.
    yield_every: int = 32

    async def process(self, batch: Batch) -> None:
        ticket = batch.ticket
        batch_id = f"input-{ticket.id}"
        started = time.perf_counter()
        for n, msg in enumerate(batch.messages):
            if n and n % self.yield_every == 0:
                await asyncio.sleep(0)
            request = self.router.decode_or_route(self.codecs, msg, ticket, batch_id)
            if request is None:
                continue
            event_id = request["event_id"]
            model = (request.get("model") or {}).get("name") or self.default_model
            if model not in self.known_models:
                self.router.route(
                    msg,
                    Failed(
                        "VALIDATE",
                        "UNKNOWN_MODEL",
                        f"unknown model {model!r}; known: {', '.join(sorted(self.known_models))}",
                        event_id=event_id,
                        model=model,
                    ),
                    ticket,
                    batch_id,
                )
                continue
            topic = self.priority_topic if request.get("priority") == "HIGH" else self.inference_topic
            ts_type, ts = msg.timestamp()
            self.writer.send(
                topic,
                msg.value(),
                msg.key() if msg.key() is not None else event_id.encode(),
                headers=msg.headers(),
                timestamp=ts if ts_type and ts > 0 else None,
                ticket=ticket,
            )
        self.tracker.seal(ticket)
        BATCH_SECONDS.labels(self.role).observe(time.perf_counter() - started)
