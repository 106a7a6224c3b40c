"""The inference agent's work on one micro-batch: decode, pre-process hooks, one model run per model
(off the event loop), post-process hooks, then one result or one error per event.

Per-event failures never spoil a batch: the model runtime isolates them, hooks fail alone, and retryable
model failures are retried with backoff before they are dead-lettered.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
from pipeline.processors.events import EventCodecs, Rejected
from pipeline.processors.hooks import HookFailed, HookRegistry
from pipeline.processors.offsets import OffsetTracker
from pipeline.processors.retry import RetryPolicy
from pipeline.processors.routing import Failed, FailureRouter, trace_headers
from pipeline.processors.writer import OutputWriter
from pipeline.serde import build_result


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
    _results: dict[str, int] = field(default_factory=dict)  # per-batch counts, flushed to the metric

    async def process(self, batch: Batch) -> None:
        ticket = batch.ticket
        batch_id = f"inference-{ticket.id}"
        started_batch = time.perf_counter()
        items: list[_Item] = []
        for msg in batch.messages:
            try:
                request = self.codecs.decode_request(msg.value())
            except Rejected as rej:
                self.router.route(msg, rej.as_failed(), ticket, batch_id)
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

        pending = items
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
        self.tracker.seal(ticket)
        for model, n in self._results.items():
            RESULTS.labels(model).inc(n)
        self._results.clear()
        BATCH_SECONDS.labels(self.role).observe(time.perf_counter() - started_batch)

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
        result = build_result(
            request=request,
            model_name=outcome.model.name,
            model_version=outcome.model.version,
            provider=outcome.model.provider,
            output=_output(outcome),
            queued_ms=queued_ms,
            inference_ms=inference_ms,
            batch_size=batch_size,
            worker_id=self.worker_id,
            truncated=outcome.truncated,
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


_DTYPE_NAMES: dict[np.dtype[Any], str] = {}


def _output(outcome: Success) -> dict[str, Any]:
    """The result's output union: an embedding, or named tensors (little-endian bytes, numpy dtype names)."""
    if outcome.embedding is not None:
        return {"embedding": outcome.embedding.astype(np.float32, copy=False).tolist()}
    tensors = []
    for name, array in outcome.outputs.items():
        dtype = array.dtype
        dtype_name = _DTYPE_NAMES.get(dtype)
        if dtype_name is None:
            dtype_name = _DTYPE_NAMES.setdefault(dtype, dtype.name)
        data = (
            array.tobytes()
            if dtype.byteorder in ("<", "=", "|") and _LITTLE
            else array.astype(dtype.newbyteorder("<")).tobytes()
        )
        tensors.append({"name": name, "dtype": dtype_name, "shape": list(array.shape), "data": data})
    return {"tensors": tensors}


_LITTLE = sys.byteorder == "little"
