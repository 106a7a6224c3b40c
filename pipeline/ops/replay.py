"""Replay: copy a range of one topic to another, exactly once, resumable after any interruption.

How "exactly once" holds: one transactional producer (``transactional.id`` derived from the replay id)
writes a chunk of copied records and, in the same transaction, the source positions they reach as the
replay group's offsets (``send_offsets_to_transaction``). A kill between commits leaves an open
transaction that the next run's ``init_transactions`` aborts (read_committed readers never see it), and
that run starts from the committed positions: nothing is copied twice and nothing is skipped. The range
itself (end offsets captured when the replay was first planned) rides in the commit metadata
(:mod:`pipeline.ops.replay_plan`), so the source may keep growing and a resumed run still stops where the
first run would have.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.ops.errors import CommandError
from pipeline.ops.filters import RecordFilter
from pipeline.ops.ranges import (
    PartitionRange,
    offsets_for_time,
    plan_range,
    probe_consumer,
    read_range_batches,
    require_topic,
    resolve,
    watermarks,
)
from pipeline.ops.replay_plan import (
    ReplayPlan,
    group_for,
    keep_partitions,
    range_from_metadata,
    record_resolver,
    remaining,
    replay_headers,
    transactional_id_for,
)
from pipeline.ops.timespec import Position
from pipeline.serde import Codecs, EventError, RegistryUnavailable

Progress = Callable[[int], None]  # called with the number of source records just gone past (copied or not)


@dataclass
class ReplayReport:
    plan: ReplayPlan
    resumed: bool = False  # a previous run had committed part of this replay
    already_done: int = 0  # records a previous run had committed
    copied: int = 0
    filtered: int = 0
    transactions: int = 0
    seconds: float = 0.0
    per_partition: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Planned:
    """A plan and how much of it a previous run already committed."""

    plan: ReplayPlan  # the whole range, as first planned
    todo: list[PartitionRange]  # what is left
    resumed: bool

    @property
    def left(self) -> int:
        return sum(r.size for r in self.todo)


def plan_replay(
    settings: Settings,
    replay_id: str,
    source: str,
    target: str,
    start: Position | None,
    end: Position | None,
) -> Planned:
    """The range to copy: the one a previous run of this replay recorded, or a new one from ``start``
    (default: the beginning) to ``end`` (default: the end offsets right now)."""
    if source == target:
        raise CommandError("--source and --target are the same topic: a replay would feed itself")
    partitions = require_topic(settings, source)
    require_topic(settings, target)
    consumer = Consumer(consumer_config(settings, group_for(settings.group, replay_id)))
    try:
        marks = watermarks(consumer, source, partitions)
        committed = _committed_with_retry(consumer, [TopicPartition(source, p) for p in partitions])
        recorded = {tp.partition: (tp, range_from_metadata(replay_id, tp.partition, tp.metadata)) for tp in committed}
        # every partition of a plan records it; one added to the source since was not part of it
        if any(r is not None for _, r in recorded.values()):
            ranges = [r for _, r in recorded.values() if r is not None]
            done = {p: tp.offset for p, (tp, r) in recorded.items() if r is not None and tp.offset >= 0}
            plan = ReplayPlan(replay_id, source, target, tuple(sorted(ranges, key=lambda r: r.partition)))
            return Planned(plan, remaining(plan.ranges, done), resumed=True)
        lows = {p: low for p, (low, _) in marks.items()}
        highs = {p: high for p, (_, high) in marks.items()}
        starts = resolve(start, lows, marks, _by_time(consumer, source, partitions, start))
        ends = resolve(end, highs, marks, _by_time(consumer, source, partitions, end))
    finally:
        consumer.close()
    found = {r.partition: r for r in plan_range(starts, ends, marks)}
    # an empty partition still takes part, so every partition records the plan and a resume knows it whole
    planned = tuple(found.get(p, PartitionRange(p, 0, 0)) for p in partitions)
    plan = ReplayPlan(replay_id, source, target, planned)
    return Planned(plan, list(plan.ranges), resumed=False)


def _by_time(consumer: Consumer, topic: str, partitions: list[int], pos: Position | None) -> dict[int, int] | None:
    if pos is None or pos.time_ms is None:
        return None
    return offsets_for_time(consumer, topic, partitions, pos.time_ms)


def run_replay(
    settings: Settings,
    planned: Planned,
    flt: RecordFilter,
    *,
    rate: float | None = None,
    transaction_records: int = 5000,
    transaction_s: float = 1.0,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ReplayReport:
    """Copy what is left of the plan. ``rate`` caps source records per second; a transaction closes at
    ``transaction_records`` copied records or ``transaction_s`` seconds, whichever comes first."""
    plan = planned.plan
    report = ReplayReport(plan, resumed=planned.resumed, already_done=plan.total - planned.left)
    codecs = Codecs.from_settings(settings, validate=False) if _needs_decode(flt) else None
    todo = {r.partition: r for r in planned.todo if r.size > 0}
    began = time.monotonic()
    if dry_run:
        consumer = probe_consumer(settings, **{"enable.partition.eof": True})
        try:
            for batch in read_range_batches(consumer, plan.source, list(todo.values()), 1000):
                for msg in batch:
                    if _keeps(flt, msg, codecs):
                        report.copied += 1
                    else:
                        report.filtered += 1
                if progress:
                    progress(len(batch))
        finally:
            consumer.close()
        report.seconds = time.monotonic() - began
        return report

    consumer = Consumer(
        consumer_config(
            settings,
            group_for(settings.group, plan.replay_id),
            **{"enable.partition.eof": True, "isolation.level": "read_committed"},
        )
    )
    producer = Producer(
        producer_config(
            settings,
            **{
                "transactional.id": transactional_id_for(settings.group, plan.replay_id),
                "transaction.timeout.ms": 60_000,
            },
        )
    )
    positions = {r.partition: r.start for r in planned.todo}
    try:
        producer.init_transactions(30)  # fences an interrupted run of this replay, aborting its open transaction
        if not planned.resumed:
            producer.begin_transaction()  # record the plan before copying anything
            _finish(producer, consumer, plan, positions)
            report.transactions += 1
        target_parts = len(consumer.list_topics(plan.target, timeout=10).topics[plan.target].partitions)
        same_partition = keep_partitions(len(plan.ranges), target_parts)
        in_txn = 0
        txn_started = time.monotonic()
        producer.begin_transaction()
        for batch in read_range_batches(consumer, plan.source, list(todo.values()), _batch_size(rate)):
            for msg in batch:
                p, offset = msg.partition(), msg.offset()
                positions[p] = offset + 1
                if not _keeps(flt, msg, codecs):
                    report.filtered += 1
                    continue
                _produce(producer, plan, msg, p if same_partition else None)
                in_txn += 1
                report.per_partition[p] = report.per_partition.get(p, 0) + 1
            if progress:
                progress(len(batch))
            if rate:
                _pace(began, report.copied + in_txn + report.filtered, rate)
            if in_txn >= transaction_records or time.monotonic() - txn_started >= transaction_s:
                _finish(producer, consumer, plan, positions)
                report.copied += in_txn
                report.transactions += 1
                in_txn = 0
                txn_started = time.monotonic()
                producer.begin_transaction()
        for p, r in todo.items():  # the end was reached, perhaps past transaction markers no record shows
            positions[p] = max(positions[p], r.end)
        _finish(producer, consumer, plan, positions)
        report.copied += in_txn
        report.transactions += 1
    except KafkaException as exc:
        _abort(producer)
        raise CommandError(f"replay {plan.replay_id} stopped: {exc}; run it again to resume") from None
    except BaseException:
        _abort(producer)  # Ctrl-C: what was committed stays, the open transaction goes
        raise
    finally:
        consumer.close()
    report.seconds = time.monotonic() - began
    return report


def _needs_decode(flt: RecordFilter) -> bool:
    cheap = ("key", "partition")
    return any(n not in cheap and not n.startswith("header.") for n in flt.names())


def _keeps(flt: RecordFilter, msg: Message, codecs: Codecs | None) -> bool:
    if not flt:
        return True

    def decode() -> tuple[str, dict[str, Any]] | None:
        if codecs is None:
            return None
        value = msg.value()
        for kind, codec in (("request", codecs.request), ("result", codecs.result), ("error", codecs.error)):
            try:
                return kind, codec.decode(value)
            except (EventError, RegistryUnavailable):
                continue
        return None

    return flt.keeps(record_resolver(msg.key(), msg.partition(), msg.headers() or [], decode))


def _batch_size(rate: float | None) -> int:
    """A tenth of a second's worth at ``rate``: pacing is per batch, so a low rate must not mean a burst
    of a thousand records (nor one transaction outliving its timeout)."""
    return 1000 if not rate else max(1, min(1000, int(rate / 10)))


def _produce(producer: Producer, plan: ReplayPlan, msg: Message, partition: int | None) -> None:
    headers = replay_headers(msg.headers() or [], plan.replay_id, plan.source, msg.partition(), msg.offset())
    kwargs = {} if partition is None else {"partition": partition}
    ts_type, ts = msg.timestamp()
    while True:
        try:
            producer.produce(
                plan.target, value=msg.value(), key=msg.key(), headers=headers, timestamp=ts if ts_type else 0, **kwargs
            )
            return
        except BufferError:
            producer.poll(0.05)


def _offsets(plan: ReplayPlan, positions: dict[int, int]) -> list[TopicPartition]:
    """Every partition of the plan, each with its position and the plan as metadata."""
    return [
        TopicPartition(plan.source, r.partition, positions.get(r.partition, r.start), plan.metadata(r))
        for r in plan.ranges
    ]


def _finish(producer: Producer, consumer: Consumer, plan: ReplayPlan, positions: dict[int, int]) -> None:
    producer.send_offsets_to_transaction(_offsets(plan, positions), consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(60)


def _abort(producer: Producer) -> None:
    # no transaction open, or the broker is gone: the next run's init_transactions aborts it anyway
    with contextlib.suppress(KafkaException):
        producer.abort_transaction(10)


def _pace(began: float, done: int, rate: float) -> None:
    ahead = done / rate - (time.monotonic() - began)
    if ahead > 0:
        time.sleep(ahead)


def _committed_with_retry(consumer: Consumer, tps: list[TopicPartition], attempts: int = 4) -> list[TopicPartition]:
    """The group coordinator may be loading or busy (a new broker, a loaded machine): ask again."""
    for attempt in range(attempts):
        try:
            return list(consumer.committed(tps, timeout=10))
        except KafkaException:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    return []
