"""Dead-letter records: the original record unchanged plus ``__pipeline.errors.*`` context headers.

This module is the one definition of those headers: the worker writes them with
:meth:`DeadLetterContext.headers`, and ``pipeline dlq``, ``pipeline tail`` and tests read them with
:func:`read_context`. The names follow Kafka Connect's ``__connect.errors.*`` convention in a namespace of
our own; values are UTF-8 text, numbers in decimal, so any tool can read them.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.serde.errors import EventError

PREFIX = "__pipeline.errors."
REDRIVE_COUNT = "__pipeline.redrive.count"
"""Set by ``pipeline dlq redrive`` on a record it sends back: how many times it was redriven."""
MAX_STACKTRACE = 8000
MAX_MESSAGE = 2000

# The context fields, in the order they are written; each header is PREFIX + field.
FIELDS = (
    "topic",
    "partition",
    "offset",
    "timestamp",
    "group",
    "stage",
    "error_code",
    "event_id",
    "model",
    "batch_id",
    "attempts",
    "exception.class",
    "exception.message",
    "exception.stacktrace",
)

Headers = list[tuple[str, bytes]]


def header_name(field: str) -> str:
    """The header that holds context ``field`` (one of :data:`FIELDS`)."""
    if field not in FIELDS:
        raise KeyError(f"not a dead-letter context field: {field!r}")
    return PREFIX + field


@dataclass(frozen=True)
class DeadLetterContext:
    topic: str
    partition: int
    offset: int
    timestamp: int
    group: str
    stage: str
    error_code: str
    attempts: int
    exception_class: str
    exception_message: str
    stacktrace: str = ""
    event_id: str | None = None
    model: str | None = None
    batch_id: str | None = None

    def headers(self) -> Headers:
        values: dict[str, str | int | None] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "group": self.group,
            "stage": self.stage,
            "error_code": self.error_code,
            "event_id": self.event_id,
            "model": self.model,
            "batch_id": self.batch_id,
            "attempts": self.attempts,
            "exception.class": self.exception_class,
            "exception.message": self.exception_message[:MAX_MESSAGE],
            "exception.stacktrace": self.stacktrace[-MAX_STACKTRACE:],
        }
        return [(PREFIX + k, str(values[k]).encode()) for k in FIELDS if values[k] is not None]


def describe_exception(exc: BaseException | None) -> tuple[str, str, str]:
    """(class, message, stack trace) of an exception, or of a routed error that raised nothing.

    An :class:`EventError` is an outcome the code foresaw, and its code and message say what happened: its
    trace lists the frames without their source lines. Formatting those (reading the files, placing the
    carets) took nine tenths of routing a poison record, and a stream of poison must not cost much more
    than a clean one. Any other exception gets Python's full trace.
    """
    if exc is None:
        return "", "", ""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(exc, EventError):
        return name, str(exc), _frames(exc, name)
    stack = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    return name, str(exc), stack


def _frames(exc: BaseException, name: str) -> str:
    lines = ["Traceback (most recent call last):\n"]
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}\n')
        tb = tb.tb_next
    lines.append(f"{name}: {exc}\n")
    return "".join(lines)


def dead_letter_headers(original: Sequence[tuple[str, bytes]] | None, ctx: DeadLetterContext) -> Headers:
    """Original headers first (older context headers from an earlier failure are replaced)."""
    kept = [(k, v) for k, v in (original or []) if not k.startswith(PREFIX)]
    return kept + ctx.headers()


def read_context(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """A dead letter's context fields by their short names (``stage``, ``exception.class``, ...)."""
    return {
        k[len(PREFIX) :]: v.decode("utf-8", "replace")
        for k, v in headers or ()
        if k.startswith(PREFIX) and v is not None
    }


def original_headers(headers: Sequence[tuple[str, bytes]] | None) -> Headers:
    """The headers a record had before it failed: context and redrive bookkeeping removed."""
    return [(k, v) for k, v in headers or () if not k.startswith(PREFIX) and k != REDRIVE_COUNT]


def header_value(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None
