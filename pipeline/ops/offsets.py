"""`offsets reset`: move a stopped consumer group's committed offsets on one topic.

Kafka only lets a group's offsets be altered while it has no members, and a live member would overwrite
them at its next commit anyway, so we refuse while it has any. ``target_offsets`` is the policy (pure).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.ops.errors import CommandError
from pipeline.ops.ranges import offsets_for_time, probe_consumer, require_topic, watermarks


class ResetTo(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"
    DATETIME = "datetime"


@dataclass(frozen=True)
class OffsetChange:
    partition: int
    old: int | None  # None: the group has no committed offset there
    new: int


def target_offsets(
    to: ResetTo, marks: dict[int, tuple[int, int]], by_time: dict[int, int] | None = None
) -> dict[int, int]:
    """Offsets per partition; a time later than every record means the end (nothing to re-read)."""
    if to is ResetTo.EARLIEST:
        return {p: low for p, (low, _) in marks.items()}
    if to is ResetTo.LATEST:
        return {p: high for p, (_, high) in marks.items()}
    assert by_time is not None
    return {p: (marks[p][1] if by_time[p] < 0 else by_time[p]) for p in marks}


def _result(futures: dict[str, object], what: str) -> object:
    try:
        return next(iter(futures.values())).result()  # type: ignore[attr-defined]
    except KafkaException as exc:
        raise CommandError(f"{what}: {exc.args[0].str() if exc.args else exc}") from None


def active_members(admin: AdminClient, group: str, timeout_s: float) -> int:
    desc = _result(admin.describe_consumer_groups([group], request_timeout=timeout_s), f"describe group {group}")
    return len(getattr(desc, "members", None) or [])


def committed(admin: AdminClient, group: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    res = _result(admin.list_consumer_group_offsets([req]), f"list offsets of group {group}")
    out: dict[int, int | None] = {}
    for tp in getattr(res, "topic_partitions", []) or []:
        out[tp.partition] = tp.offset if tp.offset >= 0 else None
    return out


def plan_reset(
    settings: Settings, group: str, topic: str, to: ResetTo, time_ms: int | None = None
) -> tuple[AdminClient, list[OffsetChange]]:
    """What a reset would do; raises while the group has members."""
    partitions = require_topic(settings, topic)
    admin = connect_admin(settings)
    members = active_members(admin, group, settings.admin_timeout_s)
    if members:
        raise CommandError(f"group {group!r} has {members} active member(s): stop them before resetting offsets")
    consumer = probe_consumer(settings)
    try:
        marks = watermarks(consumer, topic, partitions)
        by_time = None
        if to is ResetTo.DATETIME:
            if time_ms is None:
                raise CommandError("--to-datetime needs a time")
            by_time = offsets_for_time(consumer, topic, partitions, time_ms)
    finally:
        consumer.close()
    new = target_offsets(to, marks, by_time)
    old = committed(admin, group, topic, partitions)
    return admin, [OffsetChange(p, old.get(p), new[p]) for p in partitions]


def apply_reset(admin: AdminClient, group: str, topic: str, changes: list[OffsetChange]) -> None:
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, c.partition, c.new) for c in changes])
    res = _result(admin.alter_consumer_group_offsets([req]), f"alter offsets of group {group}")
    for tp in getattr(res, "topic_partitions", []) or []:
        if tp.error is not None:
            raise CommandError(f"alter offsets of group {group} on {topic}[{tp.partition}]: {tp.error}")
