"""Where a failed event goes: one ``InferenceError`` on the error topic and the original record, with its
context in headers, on the dead-letter topic. Both writes carry the batch's ticket, so the input offset is
committed only once the broker has acknowledged them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from pipeline.observability.metrics import EVENTS_DEAD_LETTERED, EVENTS_FAILED
from pipeline.processors.deadletter import DeadLetterContext, dead_letter_headers, describe_exception
from pipeline.processors.events import EventCodecs, Rejected
from pipeline.processors.hooks import HookRegistry
from pipeline.processors.offsets import Ticket
from pipeline.processors.writer import OutputWriter
from pipeline.serde import build_error

log = logging.getLogger("pipeline.routing")

# Carried from an input record to every record made from it, so an upstream trace continues downstream.
TRACE_HEADERS = ("traceparent", "tracestate")


def trace_headers(msg: Message) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in (msg.headers() or ()) if k in TRACE_HEADERS and v is not None]


@dataclass(frozen=True)
class Failed:
    """Why one record failed, in the terms of the InferenceError schema."""

    stage: str
    code: str
    message: str
    retryable: bool = False
    attempts: int = 1
    exception: BaseException | None = None
    event_id: str | None = None
    model: str | None = None


@dataclass
class FailureRouter:
    writer: OutputWriter
    codecs: EventCodecs
    error_topic: str
    dead_letter_topic: str
    group: str
    hooks: HookRegistry | None = None

    def decode_or_route(
        self, codecs: EventCodecs, msg: Message, ticket: Ticket, batch_id: str
    ) -> dict[str, Any] | None:
        """The record's request, or None once a record that cannot be one is routed (both agents start so)."""
        try:
            return codecs.decode_request(msg.value())
        except Rejected as rej:
            self.route(msg, rej.as_failed(), ticket, batch_id)
            return None

    def route(self, msg: Message, failed: Failed, ticket: Ticket, batch_id: str) -> None:
        error_event: dict[str, Any] = build_error(
            stage=failed.stage,
            error_code=failed.code,
            message=failed.message,
            source_topic=msg.topic(),
            source_partition=msg.partition(),
            source_offset=msg.offset(),
            event_id=failed.event_id,
            retryable=failed.retryable,
            attempts=failed.attempts,
            model=failed.model,
        )
        EVENTS_FAILED.labels(failed.stage, failed.code).inc()
        EVENTS_DEAD_LETTERED.labels(failed.stage, failed.code).inc()
        value = self.codecs.encode_error(error_event)
        key = failed.event_id.encode() if failed.event_id else msg.key()
        traces = trace_headers(msg)
        self.writer.send(self.error_topic, value, key, headers=traces or None, ticket=ticket)

        cls, text, stack = describe_exception(failed.exception)
        if failed.exception is None:
            # a failure reported as a value (a model outcome), not raised: name its kind, no stack
            cls, text, stack = f"pipeline.{failed.stage.lower()}.{failed.code}", failed.message, ""
        ts_type, ts = msg.timestamp()
        ctx = DeadLetterContext(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp=ts,
            group=self.group,
            stage=failed.stage,
            error_code=failed.code,
            attempts=failed.attempts,
            exception_class=cls,
            exception_message=text or failed.message,
            stacktrace=stack,
            event_id=failed.event_id,
            model=failed.model,
            batch_id=batch_id,
        )
        self.writer.send(
            self.dead_letter_topic,
            msg.value(),
            msg.key(),
            headers=dead_letter_headers(msg.headers(), ctx),
            timestamp=ts if ts_type and ts > 0 else None,
            ticket=ticket,
        )
        if self.hooks is not None and self.hooks.on_error:
            try:
                self.hooks.run_on_error(error_event)
            except Exception as exc:  # already routed: an on-error hook cannot route it twice
                log.warning("on_error hook failed for %s: %s", failed.event_id or "?", exc)
        log.info(
            "event routed to error and dead-letter",
            extra={
                "event_id": failed.event_id,
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "stage": failed.stage,
                "error_code": failed.code,
            },
        )
