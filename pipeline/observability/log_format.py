"""Structured logs: JSON lines or text, with event context fields, and secrets never written.

Per-event log calls pass ``extra={"event_id": ..., "topic": ..., "partition": ..., "offset": ...}``; the JSON
formatter emits them as fields and the text formatter appends them. A redaction filter replaces every
configured secret wherever it would appear, including in messages that libraries build themselves.
"""

from __future__ import annotations

import json
import logging
import time

from pipeline.observability.redact import Redactor

CONTEXT_FIELDS = ("event_id", "topic", "partition", "offset", "stage", "error_code", "role", "batch_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = [f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None) is not None]
        return f"{text} [{' '.join(context)}]" if context else text


class RedactSecrets(logging.Filter):
    """Replaces secrets in the formatted message, its arguments and its traceback before any handler
    writes them (the rules are pipeline/observability/redact.py's)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redactor(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True
