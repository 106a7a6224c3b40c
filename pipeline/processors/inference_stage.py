"""The inference agent's work on one micro-batch: decode, pre-process hooks, one model run per model
(off the event loop), post-process hooks, then one result or one error per event.

Per-event failures never spoil a batch: the model runtime isolates them, hooks fail alone, and retryable
model failures are retried with backoff before they are dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from pipeline.model.outcome import Failure, Outcome, Success
from pipeline.model.service import ModelService
from pipeline.observability.metrics import (
    BATCH_SECONDS,
    INFERENCE_SECONDS,
    RESULTS,
    RETRIES,
    STAGE_SECONDS,
)
from pipeline.processors.batch import Batch
from pipeline.processors.events import EventCodecs
from pipeline.processors.hooks import HookFailed, HookRegistry
from pipeline.processors.offsets import OffsetTracker
from pipeline.processors.results import success_result
from pipeline.processors.retry import RetryPolicy
from pipeline.processors.routing import Failed, FailureRouter, trace_headers
from pipeline.processors.writer import OutputWriter


@dataclass
class _Item:
    msg: Message
    request: dict[str, Any]
    model: str
    attempts: int = 0


@dataclass
class InferenceStage:
    codecs: EventCodecs
    models: ModelService
    writer: OutputWriter
    tracker: OffsetTracker
    router: FailureRouter
    output_topic: str
    worker_id: str
    hooks: HookRegistry = field(default_factory=HookRegistry)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    role: str = "inference"
    batch_size: int = 32  # events per model run; an item from the reader may hold several model batches
    item_budget_s: float = 0.02
    max_item_batches: int = 16
    _results: dict[str, int] = field(default_factory=dict)  # per-batch counts, flushed to the metric

    async def process(self, batch: Batch) -> None:
        ticket = batch.ticket
        batch_id = f"inference-{ticket.id}"
        started_batch = time.perf_counter()
        items: list[_Item] = []
        for msg in batch.messages:
            request = self.router.decode_or_route(self.codecs, msg, ticket, batch_id)
            if request is None:
                continue
            model = (request.get("model") or {}).get("name") or self.models.default_model
            if self.hooks.pre_process:
                try:
                    request = self.hooks.run_pre(request)
                except HookFailed as exc:
                    self.router.route(msg, _hook_failure(exc, request, model), ticket, batch_id)
                    continue
            items.append(_Item(msg, request, model))
        STAGE_SECONDS.labels("decode").observe(time.perf_counter() - started_batch)

        size = self.batch_size
        for start in range(0, len(items), size):
            if start:
                await asyncio.sleep(0)  # let the other agent and the hand-offs in between model batches
            await self._run(items[start : start + size], ticket, batch_id)
        self.tracker.seal(ticket)
        for model, n in self._results.items():
            RESULTS.labels(model).inc(n)
        self._results.clear()
        BATCH_SECONDS.labels(self.role).observe(time.perf_counter() - started_batch)

    async def _run(self, chunk: list[_Item], ticket: Any, batch_id: str) -> None:
        """One model batch, with its retries, and every event's result or error."""
        pending = chunk
        while pending:
            started = time.time()
            outcomes = await self.models.run_batch_async([(i.model, i.request["payload"]) for i in pending])
            inference_ms = (time.time() - started) * 1000.0
            INFERENCE_SECONDS.labels(self.models.default_model).observe(inference_ms / 1000.0)
            encode_started = time.perf_counter()
            retry: list[_Item] = []
            for item, outcome in zip(pending, outcomes, strict=True):
                item.attempts += 1
                if isinstance(outcome, Failure) and outcome.retryable and self.retry.should_retry(item.attempts):
                    retry.append(item)
                    continue
                self._emit(item, outcome, started, inference_ms, len(pending), ticket, batch_id)
            STAGE_SECONDS.labels("encode").observe(time.perf_counter() - encode_started)
            if retry:
                RETRIES.labels("model").inc(len(retry))
                await asyncio.sleep(self.retry.delay_s(max(i.attempts for i in retry)))
            pending = retry

    def item_size(self) -> int:
        """How many events the reader should hand over at once: as many model batches as typically run
        within ``item_budget_s`` (at least one, at most ``max_item_batches``). A small, fast model then
        gets items of hundreds of events (one hand-off, one ticket, one commit for many model batches); a
        slow one gets one model batch per item, so the priority lane never waits behind a long item."""
        typical = self.models.typical_batch_s
        if not typical > 0 or typical == float("inf"):
            return self.batch_size
        batches = int(self.item_budget_s / typical)
        return self.batch_size * max(1, min(batches, self.max_item_batches))

    def _emit(
        self,
        item: _Item,
        outcome: Outcome,
        started: float,
        inference_ms: float,
        batch_size: int,
        ticket: Any,
        batch_id: str,
    ) -> None:
        request, msg = item.request, item.msg
        if isinstance(outcome, Failure):
            code = outcome.code.value if hasattr(outcome.code, "value") else str(outcome.code)
            if outcome.retryable:
                code = "RETRIES_EXHAUSTED"
            stage = "VALIDATE" if code == "UNKNOWN_MODEL" else "INFERENCE"
            self.router.route(
                msg,
                Failed(
                    stage,
                    code,
                    outcome.message,
                    retryable=outcome.retryable,
                    attempts=item.attempts,
                    event_id=request.get("event_id"),
                    model=item.model,
                ),
                ticket,
                batch_id,
            )
            return
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
                self.router.route(msg, _hook_failure(exc, request, item.model), ticket, batch_id)
                return
        value = self.codecs.encode_result(result)
        self._results[item.model] = self._results.get(item.model, 0) + 1
        key = msg.key() if msg.key() is not None else str(request["event_id"]).encode()
        self.writer.send(self.output_topic, value, key, headers=trace_headers(msg) or None, ticket=ticket)


def _hook_failure(exc: HookFailed, request: dict[str, Any], model: str) -> Failed:
    return Failed(
        "HOOK",
        "HOOK_FAILED",
        str(exc),
        exception=exc.cause,
        event_id=request.get("event_id"),
        model=model,
    )
