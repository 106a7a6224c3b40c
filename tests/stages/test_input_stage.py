"""The input stage: records in, the records to write out (forwards, or an error event and a dead letter)."""

from __future__ import annotations

import asyncio

import numpy as np

from pipeline.config import Settings
from pipeline.observability.metrics import Metrics
from pipeline.serde import Codecs, build_request
from pipeline.serde.deadletter import header_name, header_value, read_context
from pipeline.stages.input import InputStage
from tests.stages.conftest import Consumed, batch_of, by_topic, router


def _stage(settings: Settings, codecs: Codecs, metrics: Metrics) -> InputStage:
    return InputStage(
        codecs.request,
        router(settings, codecs, metrics),
        settings.topics.inference,
        settings.topics.inference_priority,
        frozenset({"tiny", "minilm-l6"}),
        "tiny",
        metrics,
    )


def test_valid_requests_are_forwarded_unchanged_and_bad_ones_become_errors(settings: Settings, codecs: Codecs) -> None:
    metrics = Metrics()
    x = np.ones(8, np.float32)
    normal = build_request(model="tiny", tensors={"x": x})
    keyless = build_request(model="tiny", tensors={"x": x})
    urgent = build_request(model="tiny", tensors={"x": x}, priority="HIGH")
    unknown = build_request(model="nope", tensors={"x": x})
    trace = [("traceparent", b"00-ab-cd-01"), ("tenant", b"t1")]
    records = [
        Consumed(codecs.request.encode(normal), b"k1", trace),
        Consumed(b"not avro", b"k2", trace),
        Consumed(codecs.request.encode(keyless)),
        Consumed(codecs.request.encode(urgent), b"k3"),
        Consumed(codecs.request.encode(unknown), b"k4", trace),
    ]
    out = asyncio.run(_stage(settings, codecs, metrics).process(batch_of(records)))
    topics = by_topic(out)

    forwarded = topics[settings.topics.inference]
    assert [r.value for r in forwarded] == [records[0].value_, records[2].value_]
    assert forwarded[0].key == b"k1" and forwarded[0].headers == trace and forwarded[0].timestamp == 1_700_000_000_000
    assert forwarded[1].key == keyless["event_id"].encode()  # no upstream key: the event id
    assert [r.value for r in topics[settings.topics.inference_priority]] == [records[3].value_]

    errors = [codecs.error.decode(r.value) for r in topics[settings.topics.error]]
    assert [(e["stage"], e["error_code"], e["source_offset"]) for e in errors] == [
        ("DECODE", "BAD_MAGIC", 1),
        ("VALIDATE", "UNKNOWN_MODEL", 4),
    ]
    assert errors[1]["event_id"] == unknown["event_id"] and errors[1]["model"] == "nope"
    letters = topics[settings.topics.dead_letter]
    assert [r.value for r in letters] == [records[1].value_, records[4].value_]  # byte for byte
    assert [r.key for r in letters] == [b"k2", b"k4"]
    context = read_context(letters[0].headers)
    assert context["error_code"] == "BAD_MAGIC" and context["offset"] == "1" and context["group"] == "unit.x"
    assert header_value(letters[1].headers, "tenant") == "t1"  # the original headers stay
    assert header_value(letters[1].headers, header_name("batch_id")) == "input-1"
    # an error event carries the trace context of the record it is about
    assert topics[settings.topics.error][0].headers == [("traceparent", b"00-ab-cd-01")]
    # errors and dead letters are written in the order of the records they answer
    assert [r.topic for r in out if r.topic in (settings.topics.error, settings.topics.dead_letter)] == [
        settings.topics.error,
        settings.topics.dead_letter,
    ] * 2


def test_failures_are_counted_by_stage_and_code(settings: Settings, codecs: Codecs) -> None:
    metrics = Metrics()
    asyncio.run(_stage(settings, codecs, metrics).process(batch_of([Consumed(b""), Consumed(b"\xc3\x02xx")])))
    failed = {
        (s.labels["stage"], s.labels["error_code"]): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "pipeline_events_failed_total"
    }
    assert failed == {("DECODE", "EMPTY"): 1.0, ("DECODE", "BAD_MAGIC"): 1.0}


def test_what_a_failure_repeats_of_a_hostile_record_is_cut_short(settings: Settings, codecs: Codecs) -> None:
    """A model name of 90,000 chars is an unknown model: its error event, key and dead-letter headers repeat
    200 chars of it, and a trace header the size of a record is not carried to the error topic."""
    from pipeline.serde.store import shared_store
    from pipeline.stages.failures import MAX_ECHOED_CHARS

    metrics = Metrics()
    name = "m" * 90_000
    hostile = build_request(model=name, text="hi")
    trace = [("traceparent", b"t" * 100_000), ("tracestate", b"ok")]
    value = codecs.request.encode(hostile)
    out = asyncio.run(_stage(settings, codecs, metrics).process(batch_of([Consumed(value, None, trace)])))
    error, letter = out
    assert error.value[2:10] == shared_store(settings.schemas_dir).get("inference_error").fingerprint  # newest
    event = codecs.error.decode(error.value)
    assert event["error_code"] == "UNKNOWN_MODEL" and event["model"] == name[:MAX_ECHOED_CHARS]
    assert len(event["message"]) < 300 and "90,000 chars" in event["message"]
    assert error.headers == [("tracestate", b"ok")]
    context = read_context(letter.headers)
    assert context["model"] == name[:MAX_ECHOED_CHARS] and len(context["exception.message"]) < 300
    assert letter.value == value  # byte for byte
