"""Logging set-up for commands and workers: level, text or JSON lines, secrets redacted.

librdkafka reports every failed connection attempt; the admin layer already turns those into one clear
error, so its own lines are kept to debug level unless asked for.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from pipeline.observability.log_format import JsonFormatter, RedactSecrets, TextFormatter
from pipeline.observability.redact import Redactor

CLIENT_LOGGER = "pipeline.kafka.client"
# The process's redactor: logging's handler filters it, a command's error line passes through it. Logging
# is process-wide, so its secrets are too; settings loaded later add theirs (protect).
REDACT = Redactor()
# Faust's spellings (crit, warn) and Python's.
LEVELS = {
    "crit": logging.CRITICAL,
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def configure_logging(
    level: str = "info",
    fmt: str = "text",
    secrets: Iterable[str] = (),
    client_level: str | None = None,
) -> None:
    numeric = LEVELS.get(level.lower(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    REDACT.add(secrets)
    handler.addFilter(RedactSecrets(REDACT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Faust's and mode's service start/stop chatter is for debugging, not for operators.
    for name in ("faust", "mode"):
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    # Faust's own consumer (aiokafka) follows only the control topic: during a broker outage it logs every
    # failed attempt; the readers say it once.
    quiet = logging.DEBUG if numeric <= logging.DEBUG else logging.CRITICAL
    for name in ("aiokafka", "faust.assignor"):
        logging.getLogger(name).setLevel(quiet)
    client = logging.getLevelName((client_level or ("DEBUG" if numeric <= logging.DEBUG else "CRITICAL")).upper())
    logging.getLogger(CLIENT_LOGGER).setLevel(client if isinstance(client, int) else logging.CRITICAL)


def protect(secrets: Iterable[str]) -> None:
    """Keep these secrets out of every log line and command output of this process from now on."""
    REDACT.add(secrets)
