"""Logging set-up for commands and workers.

librdkafka reports every failed connection attempt; the admin layer already turns those into one clear
error, so its own lines are kept to debug level unless asked for.
"""

from __future__ import annotations

import logging

CLIENT_LOGGER = "pipeline.kafka.client"


def configure_logging(level: str = "info", client_level: str | None = None) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(numeric)
    client = logging.getLevelName((client_level or ("DEBUG" if numeric <= logging.DEBUG else "CRITICAL")).upper())
    logging.getLogger(CLIENT_LOGGER).setLevel(client if isinstance(client, int) else logging.CRITICAL)
