"""Dead-letter records: the original record unchanged plus ``__pipeline.errors.*`` context headers.

The header names follow Kafka Connect's ``__connect.errors.*`` convention in our own namespace
(CONTRACTS.md). Values are UTF-8 text, numbers in decimal, so any tool can read them.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX = "__pipeline.errors."
REDRIVE_COUNT = "__pipeline.redrive.count"
MAX_STACKTRACE = 8000
MAX_MESSAGE = 2000

Headers = list[tuple[str, bytes]]


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
        fields: dict[str, str | int | None] = {
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
        return [(PREFIX + k, str(v).encode()) for k, v in fields.items() if v is not None]


def describe_exception(exc: BaseException | None) -> tuple[str, str, str]:
    """(class, message, stack trace) of an exception, or of a routed error that raised nothing."""
    if exc is None:
        return "", "", ""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    stack = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    return name, str(exc), stack


def dead_letter_headers(original: Sequence[tuple[str, bytes]] | None, ctx: DeadLetterContext) -> Headers:
    """Original headers first (older context headers from an earlier failure are replaced)."""
    kept = [(k, v) for k, v in (original or []) if not k.startswith(PREFIX)]
    return kept + ctx.headers()


def header_value(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None
