"""The inference agent's decisions on one item: decode, pre-process hooks, one model run per model batch
(off the event loop when the model is slow), then per event its result, or its failure.

Every step that handles one event fails that event alone: a hook that raises or runs past its deadline, a
model outcome, a result that cannot be built, a post-process hook's return value that the schema cannot
encode, a result too large to write. When a model batch fails as a whole, a known-good probe tells whose
fault it is: if the model answers the probe, the batch's events failed on their own merits and are
dead-lettered; if not, the model is down (:class:`~pipeline.model.errors.ModelUnavailable`), nothing is
dead-lettered, the item is read again after a backoff and the circuit breaker counts the failure. A model
call that raises instead of reporting outcomes is split in halves until the events that raise are found.

The stage writes nothing itself: it returns the item's records (results, errors, dead letters) and the
emitter writes them under its ticket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.kafka.batching import Batch, InRecord
from pipeline.kafka.records import OutRecord
from pipeline.model.breaker import CircuitBreaker
from pipeline.model.errors import ModelUnavailable
from pipeline.model.outcome import Outcome, Success
from pipeline.observability.metrics import Metrics
from pipeline.serde import ErrorCode, EventCodec, EventError, Failure, Stage, now_millis
from pipeline.serde.result_wire import ChunkWire, ResultWire
from pipeline.stages.failures import FailureRouter, trace_headers
from pipeline.stages.hooks import HookFailed, HookRegistry
from pipeline.stages.results import success_result

if TYPE_CHECKING:
    from pipeline.model.runner import RawInput

# Outcomes that mean "the model did not answer this event": when every event of a batch has one, the
# batch failed as a whole and the probe decides whether the model or the events are at fault.
_NO_ANSWER = frozenset({ErrorCode.INFERENCE_FAILED, ErrorCode.TIMEOUT})


class Models(Protocol):
    """What the stage asks of the model runtime (:class:`~pipeline.model.service.ModelService` is one)."""

    @property
    def default_model(self) -> str: ...

    async def run_batch_async(self, items: Sequence[tuple[str | None, RawInput]]) -> list[Outcome]: ...

    def probe(self, name: str | None = None) -> bool: ...


@dataclass
class _Item:
    msg: InRecord
    request: dict[str, Any]
    model: str


@dataclass
class InferenceStage:
    request_codec: EventCodec
    result_codec: EventCodec
    models: Models
    failures: FailureRouter
    output_topic: str
    worker_id: str
    metrics: Metrics
    breaker: CircuitBreaker
    hooks: HookRegistry = dataclasses.field(default_factory=HookRegistry)
    batch_size: int = 32  # events per model run; an item from the reader may hold several model batches
    role: str = "inference"

    def __post_init__(self) -> None:
        # Results written straight to their bytes while the codec writes the schema that writer knows.
        self._wire = ResultWire.for_codec(self.result_codec, self.output_topic)

    async def process(self, batch: Batch) -> list[OutRecord]:
        batch_id = f"inference-{batch.ticket.id}"
        started_batch = time.perf_counter()
        out: list[OutRecord] = []
        items: list[_Item] = []
        decode = self.request_codec.decode
        for msg in batch.messages:
            try:
                request = decode(msg.value())
            except EventError as exc:
                out.extend(self.failures.route(msg, exc.failure(), batch_id))
                continue
            model = (request.get("model") or {}).get("name") or self.models.default_model
            if self.hooks.pre_process:
                try:
                    request = self.hooks.run_pre(request)
                except HookFailed as exc:
                    out.extend(self.failures.route(msg, exc.failure(request.get("event_id"), model), batch_id))
                    continue
            items.append(_Item(msg, request, model))
        self.metrics.stage_seconds.labels("decode").observe(time.perf_counter() - started_batch)

        results: dict[str, int] = {}
        size = self.batch_size
        encode_s = 0.0  # over the batch's model batches: the stage metric is per batch, as decode's
        for start in range(0, len(items), size):
            if start:
                await asyncio.sleep(0)  # let the other agent and the hand-offs in between model batches
            chunk = items[start : start + size]
            began = time.time()
            outcomes = await self._infer(chunk)
            inference_ms = (time.time() - began) * 1000.0
            self.metrics.inference_seconds.labels(self.models.default_model).observe(inference_ms / 1000.0)
            await self._check_model(chunk, outcomes)
            encode_started = time.perf_counter()
            wires = None
            if self._wire is not None and not self.hooks.post_process:  # a hook's result needs the codec
                wires = self._wire.chunk(inference_ms=inference_ms, batch_size=len(chunk), worker_id=self.worker_id)
            for item, outcome in zip(chunk, outcomes, strict=True):
                out.extend(self._answer(item, outcome, began, inference_ms, len(chunk), batch_id, results, wires))
            encode_s += time.perf_counter() - encode_started
        if items:
            self.metrics.stage_seconds.labels("encode").observe(encode_s)
        for model, n in results.items():
            self.metrics.results.labels(model).inc(n)
        self.metrics.batch_seconds.labels(self.role).observe(time.perf_counter() - started_batch)
        return out

    async def _infer(self, chunk: Sequence[_Item]) -> list[Outcome]:
        """One outcome per event. The model runtime reports per-event failures as outcomes; a call that
        raises instead is split in halves until the events that make it raise fail alone."""
        try:
            return await self.models.run_batch_async([(i.model, i.request["payload"]) for i in chunk])
        except Exception as exc:
            if len(chunk) == 1:
                message = f"the model runtime raised {type(exc).__name__}: {exc}"
                return [Failure(Stage.INFERENCE, ErrorCode.INFERENCE_FAILED, message, exception=exc)]
            mid = len(chunk) // 2
            return [*await self._infer(chunk[:mid]), *await self._infer(chunk[mid:])]

    async def _check_model(self, chunk: Sequence[_Item], outcomes: Sequence[Outcome]) -> None:
        """A batch the model answered for no event: is the model down, or are these events bad?"""
        if not all(isinstance(o, Failure) and o.code in _NO_ANSWER for o in outcomes):
            self.breaker.success()
            return
        loop = asyncio.get_running_loop()
        names = sorted({i.model for i in chunk})
        for name in names:
            if not await loop.run_in_executor(None, self.models.probe, name):
                self.breaker.failure()
                first = outcomes[0]
                reason = first.message if isinstance(first, Failure) else "no answer"
                raise ModelUnavailable(f"model {name} failed a batch of {len(chunk)} and its probe: {reason}")

    def _answer(
        self,
        item: _Item,
        outcome: Outcome,
        started: float,
        inference_ms: float,
        batch_size: int,
        batch_id: str,
        results: dict[str, int],
        wires: ChunkWire | None,
    ) -> tuple[OutRecord, ...]:
        """The event's result, or its error event and dead letter."""
        request, msg = item.request, item.msg
        event_id = request.get("event_id")
        if isinstance(outcome, Failure):
            failure = dataclasses.replace(outcome, event_id=event_id, model=item.model, retryable=False)
            return self.failures.route(msg, failure, batch_id)
        assert isinstance(outcome, Success)
        ts_type, ts = msg.timestamp()
        queued_ms = max(0.0, started * 1000.0 - ts) if ts_type and ts > 0 else 0.0
        if wires is not None:
            info = outcome.model  # outside the event's failure: a registry that cannot answer retries the batch
            wire = wires.for_model(info.name, info.version, info.provider)
            try:
                value = wire.write(
                    request,
                    embedding=outcome.embedding,
                    outputs=outcome.outputs,
                    truncated=outcome.truncated,
                    queued_ms=queued_ms,
                    completed_at=now_millis(),
                )
            except EventError as exc:  # a result too large to write
                failure = dataclasses.replace(exc.failure(), event_id=event_id, model=item.model)
                return self.failures.route(msg, failure, batch_id)
            except Exception as exc:
                return self._unbuilt(item, exc, batch_id)
            return self._result(item, value, event_id, results)
        try:
            result = success_result(
                request,
                outcome,
                queued_ms=queued_ms,
                inference_ms=inference_ms,
                batch_size=batch_size,
                worker_id=self.worker_id,
            )
        except Exception as exc:
            return self._unbuilt(item, exc, batch_id)
        if self.hooks.post_process:
            try:
                result = self.hooks.run_post(request, result)
            except HookFailed as exc:
                return self.failures.route(msg, exc.failure(event_id, item.model), batch_id)
        try:
            value = self.result_codec.encode(result)
        except EventError as exc:  # a hook's return value the schema refuses, or a result too large
            failure = dataclasses.replace(exc.failure(), event_id=event_id, model=item.model)
            return self.failures.route(msg, failure, batch_id)
        return self._result(item, value, event_id, results)

    def _unbuilt(self, item: _Item, exc: Exception, batch_id: str) -> tuple[OutRecord, ...]:
        message = f"the result could not be built: {type(exc).__name__}: {exc}"
        failure = Failure(
            Stage.OUTPUT,
            ErrorCode.OUTPUT_FAILED,
            message,
            exception=exc,
            event_id=item.request.get("event_id"),
            model=item.model,
        )
        return self.failures.route(item.msg, failure, batch_id)

    def _result(self, item: _Item, value: bytes, event_id: Any, results: dict[str, int]) -> tuple[OutRecord, ...]:
        msg = item.msg
        results[item.model] = results.get(item.model, 0) + 1
        key = msg.key()
        return (
            OutRecord(
                self.output_topic,
                value,
                key if key is not None else str(event_id).encode(),
                trace_headers(msg) or None,
                source=msg,
            ),
        )
