"""The inference agent's decisions on one item: decode, pre-process hooks, one model run per model batch
(off the event loop when the model is slow), post-process hooks, then one result or one failure per event.

Per-event failures never spoil a batch: the model runtime isolates them, hooks fail alone, and retryable
model failures are retried with backoff before they are dead-lettered. The stage writes nothing itself: it
returns the item's records (results, errors, dead letters) and the emitter writes them under its ticket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from pipeline.kafka.batching import Batch, InRecord
from pipeline.kafka.records import OutRecord
from pipeline.kafka.retry import RetryPolicy
from pipeline.model.outcome import Outcome, Success
from pipeline.model.service import ModelService
from pipeline.observability.metrics import Metrics
from pipeline.serde import ErrorCode, EventCodec, EventError, Failure
from pipeline.stages.failures import FailureRouter, trace_headers
from pipeline.stages.hooks import HookFailed, HookRegistry
from pipeline.stages.results import success_result


@dataclass
class _Item:
    msg: InRecord
    request: dict[str, Any]
    model: str
    attempts: int = 0


@dataclass
class InferenceStage:
    request_codec: EventCodec
    result_codec: EventCodec
    models: ModelService
    failures: FailureRouter
    output_topic: str
    worker_id: str
    metrics: Metrics
    hooks: HookRegistry = dataclasses.field(default_factory=HookRegistry)
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    batch_size: int = 32  # events per model run; an item from the reader may hold several model batches
    role: str = "inference"

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
        for start in range(0, len(items), size):
            if start:
                await asyncio.sleep(0)  # let the other agent and the hand-offs in between model batches
            await self._run(items[start : start + size], batch_id, out, results)
        for model, n in results.items():
            self.metrics.results.labels(model).inc(n)
        self.metrics.batch_seconds.labels(self.role).observe(time.perf_counter() - started_batch)
        return out

    async def _run(self, chunk: list[_Item], batch_id: str, out: list[OutRecord], results: dict[str, int]) -> None:
        """One model batch, with its retries, and every event's result or failure."""
        pending = chunk
        while pending:
            started = time.time()
            outcomes = await self.models.run_batch_async([(i.model, i.request["payload"]) for i in pending])
            inference_ms = (time.time() - started) * 1000.0
            self.metrics.inference_seconds.labels(self.models.default_model).observe(inference_ms / 1000.0)
            encode_started = time.perf_counter()
            retry: list[_Item] = []
            for item, outcome in zip(pending, outcomes, strict=True):
                item.attempts += 1
                if isinstance(outcome, Failure) and outcome.retryable and self.retry.should_retry(item.attempts):
                    retry.append(item)
                    continue
                out.extend(self._answer(item, outcome, started, inference_ms, len(pending), batch_id, results))
            self.metrics.stage_seconds.labels("encode").observe(time.perf_counter() - encode_started)
            if retry:
                self.metrics.retries.labels("model").inc(len(retry))
                await asyncio.sleep(self.retry.delay_s(max(i.attempts for i in retry)))
            pending = retry

    def _answer(
        self,
        item: _Item,
        outcome: Outcome,
        started: float,
        inference_ms: float,
        batch_size: int,
        batch_id: str,
        results: dict[str, int],
    ) -> tuple[OutRecord, ...]:
        """The event's result, or its error event and dead letter."""
        request, msg = item.request, item.msg
        if isinstance(outcome, Failure):
            failure = dataclasses.replace(
                outcome,
                code=ErrorCode.RETRIES_EXHAUSTED if outcome.retryable else outcome.code,
                attempts=item.attempts,
                event_id=request.get("event_id"),
                model=item.model,
            )
            return self.failures.route(msg, failure, batch_id)
        assert isinstance(outcome, Success)
        ts_type, ts = msg.timestamp()
        queued_ms = max(0.0, started * 1000.0 - ts) if ts_type and ts > 0 else 0.0
        result = success_result(
            request,
            outcome,
            queued_ms=queued_ms,
            inference_ms=inference_ms,
            batch_size=batch_size,
            worker_id=self.worker_id,
        )
        if self.hooks.post_process:
            try:
                result = self.hooks.run_post(request, result)
            except HookFailed as exc:
                return self.failures.route(msg, exc.failure(request.get("event_id"), item.model), batch_id)
        value = self.result_codec.encode(result)
        results[item.model] = results.get(item.model, 0) + 1
        key = msg.key()
        return (
            OutRecord(
                self.output_topic,
                value,
                key if key is not None else str(request["event_id"]).encode(),
                trace_headers(msg) or None,
            ),
        )
