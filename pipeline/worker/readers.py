"""The readers of a worker process: their names and their Kafka clients' configs.

A bulk reader (the input topic's, the inference topic's) lets the broker hold a fetch to gather a stream's
records; the priority lane's reader answers at its first record. The inference reader counts what it has
fetched ahead in events, at its model's pace, so that a reader holding a slow model's backlog stops
fetching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config

LANE = "inference.priority"
"""The priority lane's reader: its name in metrics and logs, and its consumer group's suffix."""
FETCH_MIN_BYTES = 100_000
"""A bulk reader's fetch.min.bytes: above what a stream brings in ``reader_fetch_wait_ms``, so that the wait,
not the first record, ends a fetch; a backlog fills it at once."""
LIBRDKAFKA_QUEUED_MIN = 100_000
"""librdkafka's own queued.min.messages: a fetch-ahead past it is left to librdkafka."""
QUEUE_BACKOFF_MS = 100
"""fetch.queue.backoff.ms where a reader counts its fetch-ahead: how soon a reader whose queue held enough
looks again (no request is sent when it still does). librdkafka's 1 s would let a drained queue wait."""


def fetch_ahead(settings: Settings, events_per_s: float) -> int | None:
    """The inference reader's queued.min.messages: what the model runs in ``inference_fetch_ahead_ms`` at
    ``events_per_s``, at least four model batches; None (librdkafka's own) when off or past its own."""
    if not settings.inference_fetch_ahead_ms or not 0 < events_per_s < math.inf:
        return None
    events = max(math.ceil(events_per_s * settings.inference_fetch_ahead_ms / 1000), 4 * settings.batch_size)
    return events if events < LIBRDKAFKA_QUEUED_MIN else None


def reader_names(roles: Sequence[str]) -> tuple[str, ...]:
    """The readers a process running ``roles`` has, in the order they are built."""
    names = [role for role in ("input", "inference") if role in roles]
    return (*names, LANE) if "inference" in roles else tuple(names)


def reader_config(settings: Settings, role: str, ahead: int | None = None) -> dict[str, Any]:
    """Each reader reads in a consumer group of its own (never the Faust app's), with static membership when
    the worker has an id, so a restart takes its partitions straight back. ``ahead``: see ``fetch_ahead``
    (librdkafka counts it on the consumer's one queue, all partitions together)."""
    overrides: dict[str, Any] = {
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": min(settings.heartbeat_interval_ms, settings.session_timeout_ms // 3),
        "max.poll.interval.ms": max(60_000, settings.session_timeout_ms),
        "queued.max.messages.kbytes": settings.reader_prefetch_kbytes,
    }
    if settings.reader_fetch_wait_ms and role != LANE:
        overrides["fetch.wait.max.ms"] = settings.reader_fetch_wait_ms
        overrides["fetch.min.bytes"] = FETCH_MIN_BYTES
    if ahead is not None:
        overrides["queued.min.messages"] = ahead
        overrides["fetch.queue.backoff.ms"] = QUEUE_BACKOFF_MS
    if settings.worker_id:
        overrides["group.instance.id"] = f"{settings.worker_id}.{role}"  # see static_members
    return consumer_config(settings, f"{settings.group}.{role}", **overrides)
