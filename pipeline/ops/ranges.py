"""Bounded reads of a topic: the end offsets are captured once, at the start, so that a command that
reads "to the end" stops even while producers keep writing.

``plan_range`` is policy (pure); ``watermarks``/``offsets_for_time``/``read_range`` are the I/O.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.clients import consumer_config
from pipeline.ops.errors import CommandError
from pipeline.ops.timespec import Position


@dataclass(frozen=True)
class PartitionRange:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of one partition."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(self.end - self.start, 0)


def require_topic(settings: Settings, topic: str) -> list[int]:
    """The topic's partitions, or one clear line (broker down, or no such topic)."""
    admin = connect_admin(settings)
    md = admin.list_topics(timeout=settings.admin_timeout_s)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        raise CommandError(f"topic {topic!r} does not exist on {settings.bootstrap_servers}")
    return sorted(meta.partitions)


def probe_consumer(settings: Settings, **overrides: Any) -> Consumer:
    """A consumer in a throwaway group: it never commits, so it leaves no trace on the cluster."""
    return Consumer(consumer_config(settings, f"{settings.group}.ops-{uuid.uuid4().hex[:10]}", **overrides))


def watermarks(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}


def offsets_for_time(consumer: Consumer, topic: str, partitions: list[int], time_ms: int) -> dict[int, int]:
    """First offset at or after ``time_ms`` per partition; -1 (none that late) becomes the end offset."""
    found = consumer.offsets_for_times([TopicPartition(topic, p, time_ms) for p in partitions], timeout=10)
    out: dict[int, int] = {}
    for tp in found:
        if tp.error is not None:
            raise CommandError(f"cannot look up offsets by time on {topic}[{tp.partition}]: {tp.error}")
        out[tp.partition] = tp.offset
    return out


def resolve(
    position: Position | None,
    default: dict[int, int],
    marks: dict[int, tuple[int, int]],
    by_time: dict[int, int] | None,
) -> dict[int, int]:
    """Offsets per partition for a position: explicit offsets (partitions not named keep ``default``),
    a time (looked up beforehand into ``by_time``; -1 means past the end), or ``default``."""
    if position is None:
        return dict(default)
    if position.offsets is not None:
        unknown = sorted(set(position.offsets) - set(marks))
        if unknown:
            raise CommandError(f"no partition {unknown[0]} (the topic has {len(marks)})")
        return {p: position.offsets.get(p, default[p]) for p in marks}
    assert by_time is not None
    return {p: (marks[p][1] if by_time[p] < 0 else by_time[p]) for p in marks}


def plan_range(starts: dict[int, int], ends: dict[int, int], marks: dict[int, tuple[int, int]]) -> list[PartitionRange]:
    """Clamp to what the log holds (retention may have removed the start) and drop empty partitions."""
    plan = []
    for p, (low, high) in sorted(marks.items()):
        start = min(max(starts.get(p, low), low), high)
        end = min(max(ends.get(p, high), low), high)
        if end > start:
            plan.append(PartitionRange(p, start, end))
    return plan


def read_range(
    consumer: Consumer, topic: str, plan: list[PartitionRange], idle_timeout_s: float = 30.0
) -> Iterator[Message]:
    """Every record in the planned ranges, in order per partition (see ``read_range_batches``)."""
    for batch in read_range_batches(consumer, topic, plan, idle_timeout_s=idle_timeout_s):
        yield from batch


def read_range_batches(
    consumer: Consumer, topic: str, plan: list[PartitionRange], size: int = 500, idle_timeout_s: float = 30.0
) -> Iterator[list[Message]]:
    """The records of the planned ranges in batches of up to ``size``, in order per partition. A partition
    is done at its end offset, or at end of partition past it (transaction markers occupy offsets no
    consumer ever sees); a done partition is paused, since the topic may keep growing past the range."""
    pending = {r.partition: r for r in plan if r.size > 0}
    if not pending:
        return
    consumer.assign([TopicPartition(topic, r.partition, r.start) for r in pending.values()])
    assigned = set(pending)
    last = time.monotonic()
    while pending:
        msgs = consumer.consume(size, timeout=0.5)
        if msgs:
            last = time.monotonic()
        elif time.monotonic() - last > idle_timeout_s:
            raise CommandError(f"{topic}: no records for {idle_timeout_s:g}s before the end offsets captured")
        batch: list[Message] = []
        for msg in msgs:
            p = msg.partition()
            r = pending.get(p)
            if r is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise CommandError(f"reading {topic}[{p}]: {err.str()}")
                if msg.offset() >= r.end:
                    pending.pop(p)
                continue
            if msg.offset() >= r.end:
                pending.pop(p)
                continue
            batch.append(msg)
            if msg.offset() >= r.end - 1:
                pending.pop(p)
        finished = [p for p in assigned if p not in pending]
        if finished:
            consumer.pause([TopicPartition(topic, p) for p in finished])
            assigned -= set(finished)
        if batch:
            yield batch
