"""The input agent's decisions on one batch: decode and validate each record, and say where it goes.

A valid request goes to the inference topic (or the priority lane) with its value bytes, headers and
timestamp unchanged, keyed by its upstream key or, when it has none, its ``event_id``. An invalid one
becomes its error event and dead letter. The stage writes nothing itself: it returns the batch's records
and the emitter writes them under the batch's ticket.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pipeline.kafka.batching import Batch
from pipeline.kafka.records import OutRecord
from pipeline.observability.metrics import Metrics
from pipeline.serde import ErrorCode, EventCodec, EventError, Failure, Priority, Stage
from pipeline.serde.limits import shown
from pipeline.stages.failures import FailureRouter

# Events between two yields to the event loop: a long batch must not keep the other agent (and the
# readers' hand-offs) waiting.
YIELD_EVERY = 32


@dataclass
class InputStage:
    request_codec: EventCodec
    failures: FailureRouter
    inference_topic: str
    priority_topic: str
    known_models: frozenset[str]
    default_model: str
    metrics: Metrics
    role: str = "input"

    async def process(self, batch: Batch) -> list[OutRecord]:
        batch_id = f"input-{batch.ticket.id}"
        started = time.perf_counter()
        decode = self.request_codec.decode
        out: list[OutRecord] = []
        for n, msg in enumerate(batch.messages):
            if n and n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            try:
                request = decode(msg.value())
            except EventError as exc:
                out.extend(self.failures.route(msg, exc.failure(), batch_id))
                continue
            event_id = request["event_id"]
            model = (request.get("model") or {}).get("name") or self.default_model
            if model not in self.known_models:
                failure = Failure(
                    Stage.VALIDATE,
                    ErrorCode.UNKNOWN_MODEL,
                    f"model.name: unknown model {shown(model)}; known: {', '.join(sorted(self.known_models))}",
                    event_id=event_id,
                    model=model,
                )
                out.extend(self.failures.route(msg, failure, batch_id))
                continue
            topic = self.priority_topic if request.get("priority") == Priority.HIGH else self.inference_topic
            ts_type, ts = msg.timestamp()
            key = msg.key()
            out.append(
                OutRecord(
                    topic,
                    msg.value(),
                    key if key is not None else event_id.encode(),
                    msg.headers(),
                    ts if ts_type and ts > 0 else None,
                    source=msg,
                )
            )
        self.metrics.batch_seconds.labels(self.role).observe(time.perf_counter() - started)
        return out
