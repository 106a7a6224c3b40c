"""Where a failed event goes: one ``InferenceError`` on the error topic and the original record, with its
context in headers, on the dead-letter topic. The router returns both records; the stage hands them to
the emitter with the batch's other outputs, so the input offset is committed only once the broker has
acknowledged them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pipeline.kafka.batching import InRecord
from pipeline.kafka.records import Headers, OutRecord
from pipeline.observability.metrics import Metrics
from pipeline.observability.redact import Redactor
from pipeline.serde import EventCodec, Failure, build_error
from pipeline.serde.deadletter import DeadLetterContext, dead_letter_headers, describe_exception
from pipeline.stages.hooks import HookRegistry

log = logging.getLogger("pipeline.routing")

# Carried from an input record to every record made from it, so an upstream trace continues downstream.
TRACE_HEADERS = ("traceparent", "tracestate")
# A trace header longer than this is not carried: a real one is a few hundred bytes at most, and a hostile
# one the size of the record would make its error event too large for the error topic.
MAX_TRACE_HEADER_BYTES = 4096
# What an error event and a dead letter's headers repeat of a failed event (its event id, the model it
# named) is cut to this many chars: a hostile value must not make them as large as the record.
MAX_ECHOED_CHARS = 200


def trace_headers(msg: InRecord) -> Headers:
    return [
        (k, v)
        for k, v in (msg.headers() or ())
        if k in TRACE_HEADERS and v is not None and len(v) <= MAX_TRACE_HEADER_BYTES
    ]


def _echoed(value: str | None) -> str | None:
    return value if value is None or len(value) <= MAX_ECHOED_CHARS else value[:MAX_ECHOED_CHARS]


@dataclass
class FailureRouter:
    error_codec: EventCodec
    error_topic: str
    dead_letter_topic: str
    group: str
    metrics: Metrics
    hooks: HookRegistry = field(default_factory=HookRegistry)
    # An exception's text can quote a configured secret (a client error with a URL in it, a hook that
    # printed its settings); the error event and our dead-letter headers carry it redacted. The failed
    # record's own bytes and headers stay byte for byte.
    redact: Redactor = field(default_factory=Redactor)
    # (stage, code) -> its failed and dead-lettered counters: prometheus_client's labels() lookup per
    # failure was a tenth of routing one, and a stream of poison must stay cheap.
    _counters: dict[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict, init=False, repr=False)

    def route(self, msg: InRecord, failure: Failure, batch_id: str | None) -> tuple[OutRecord, OutRecord]:
        """The error event and the dead letter of one failed record."""
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        stage, code = str(failure.stage), str(failure.code)
        event_id, model = _echoed(failure.event_id), _echoed(failure.model)
        error_event: dict[str, Any] = build_error(
            stage=failure.stage,
            error_code=failure.code,
            message=self.redact(failure.message),
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            event_id=event_id,
            retryable=failure.retryable,
            attempts=failure.attempts,
            model=model,
        )
        counters = self._counters.get((stage, code))
        if counters is None:
            counters = self._counters[(stage, code)] = (
                self.metrics.events_failed.labels(stage, code),
                self.metrics.events_dead_lettered.labels(stage, code),
            )
        counters[0].inc()
        counters[1].inc()
        key = event_id.encode() if event_id else msg.key()
        error = OutRecord(self.error_topic, self.error_codec.encode(error_event), key, trace_headers(msg) or None)

        cls, text, stack = describe_exception(failure.exception)
        if failure.exception is None:
            # a failure reported as a value (a model outcome), not raised: name its kind, no stack
            cls, text, stack = f"pipeline.{stage.lower()}.{code}", failure.message, ""
        ts_type, ts = msg.timestamp()
        ctx = DeadLetterContext(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp=ts,
            group=self.group,
            stage=stage,
            error_code=code,
            attempts=failure.attempts,
            exception_class=cls,
            exception_message=self.redact(text or failure.message),
            stacktrace=self.redact(stack),
            event_id=event_id,
            model=model,
            batch_id=batch_id,
        )
        letter = OutRecord(
            self.dead_letter_topic,
            msg.value(),
            msg.key(),
            dead_letter_headers(msg.headers(), ctx),
            ts if ts_type and ts > 0 else None,
        )
        if self.hooks.on_error:
            try:
                self.hooks.run_on_error(error_event)
            except Exception as exc:  # already routed: an on-error hook cannot route it twice
                log.warning("on_error hook failed for %s: %s", event_id or "?", exc)
        log.info(
            "event routed to error and dead-letter",
            extra={
                "event_id": event_id,
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "stage": stage,
                "error_code": code,
            },
        )
        return error, letter
