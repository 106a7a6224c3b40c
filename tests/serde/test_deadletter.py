"""The dead-letter headers: written by the worker, read back by the operator tools, one definition."""

from __future__ import annotations

import pytest

from pipeline.serde.deadletter import (
    FIELDS,
    PREFIX,
    REDRIVE_COUNT,
    DeadLetterContext,
    dead_letter_headers,
    describe_exception,
    header_name,
    header_value,
    original_headers,
    read_context,
)


def test_dead_letter_headers_keep_the_original_and_add_context() -> None:
    try:
        raise ValueError("bad tensor")
    except ValueError as exc:
        cls, message, stack = describe_exception(exc)
    ctx = DeadLetterContext(
        topic="pipeline.input",
        partition=3,
        offset=42,
        timestamp=1700000000000,
        group="g.input",
        stage="VALIDATE",
        error_code="BAD_SHAPE",
        attempts=1,
        exception_class=cls,
        exception_message=message,
        stacktrace=stack,
        event_id="e-1",
    )
    original = [("traceparent", b"00-abc-def-01"), (PREFIX + "stage", b"OLD")]
    headers = dead_letter_headers(original, ctx)
    assert headers[0] == ("traceparent", b"00-abc-def-01")
    assert header_value(headers, PREFIX + "stage") == "VALIDATE"
    assert [k for k, _ in headers].count(PREFIX + "stage") == 1
    assert header_value(headers, PREFIX + "partition") == "3"
    assert header_value(headers, PREFIX + "offset") == "42"
    assert header_value(headers, PREFIX + "exception.class") == "ValueError"
    assert "bad tensor" in (header_value(headers, PREFIX + "exception.stacktrace") or "")
    assert header_value(headers, PREFIX + "model") is None  # absent fields are left out


def test_what_is_written_reads_back_field_by_field() -> None:
    ctx = DeadLetterContext(
        topic="t",
        partition=1,
        offset=7,
        timestamp=5,
        group="g",
        stage="HOOK",
        error_code="HOOK_FAILED",
        attempts=2,
        exception_class="RuntimeError",
        exception_message="boom",
        event_id="e",
        model="tiny",
        batch_id="inference-3",
    )
    headers = dead_letter_headers([("tenant", b"a"), (REDRIVE_COUNT, b"1")], ctx)
    context = read_context(headers)
    assert set(context) <= set(FIELDS)
    assert context["stage"] == "HOOK" and context["attempts"] == "2" and context["batch_id"] == "inference-3"
    assert header_value(headers, header_name("error_code")) == "HOOK_FAILED"
    assert original_headers(headers) == [("tenant", b"a")]
    with pytest.raises(KeyError):
        header_name("no_such_field")


def test_an_event_error_is_described_without_reading_source_files() -> None:
    """A foreseen failure's trace names its frames but not their source lines: formatting those was nine
    tenths of the cost of routing a poison record. Anything else keeps Python's full trace."""
    from pipeline.serde import DecodeError, ErrorCode

    def fail() -> None:
        raise DecodeError(ErrorCode.BAD_MAGIC, "first byte 7B")

    try:
        fail()
    except DecodeError as exc:
        cls, message, stack = describe_exception(exc)
    assert (cls, message) == ("pipeline.serde.errors.DecodeError", "first byte 7B")
    assert stack.startswith("Traceback (most recent call last):\n")
    assert ", in fail\n" in stack and stack.endswith("pipeline.serde.errors.DecodeError: first byte 7B\n")
    assert "raise DecodeError" not in stack  # no source line
    try:
        fail_plain = {}["missing"]  # noqa: F841
    except KeyError as exc:
        assert "fail_plain = {}" in describe_exception(exc)[2]
