"""Dead letters: summarise, filter, and redrive them to the topic they were consumed from.

The policy (what a dead letter says, which ones a filter keeps, what a redriven record looks like, when a
record has been redriven too often) is pure; ``read_dead_letters`` and ``redrive`` do the I/O.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Message, Producer

from pipeline.config import Settings
from pipeline.kafka.clients import producer_config
from pipeline.ops.filters import RecordFilter, Resolver, parse_filters
from pipeline.ops.ranges import plan_range, probe_consumer, read_range, require_topic, watermarks
from pipeline.serde.deadletter import REDRIVE_COUNT, header_name, header_value, original_headers

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, with its context headers read out."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @classmethod
    def of(cls, msg: Message) -> DeadLetter:
        return cls(msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), msg.value(), list(msg.headers() or []))

    def context(self, field: str) -> str | None:
        return header_value(self.headers, header_name(field))

    @property
    def stage(self) -> str:
        return self.context("stage") or "?"

    @property
    def error_code(self) -> str:
        return self.context("error_code") or "?"

    @property
    def exception_class(self) -> str:
        return self.context("exception.class") or ""

    @property
    def source_topic(self) -> str | None:
        return self.context("topic")

    @property
    def source_partition(self) -> int | None:
        raw = self.context("partition")
        return int(raw) if raw is not None and raw.isdigit() else None

    @property
    def redrive_count(self) -> int:
        raw = header_value(self.headers, REDRIVE_COUNT)
        return int(raw) if raw is not None and raw.isdigit() else 0

    def original_headers(self) -> Headers:
        """The headers the record had before it failed: context and redrive bookkeeping removed."""
        return original_headers(self.headers)

    def as_json(self) -> dict[str, Any]:
        """Headers as text where they are UTF-8 and base64 where not; the payload always base64."""
        headers: list[dict[str, Any]] = []
        for k, v in self.headers:
            try:
                headers.append({"key": k, "value": None if v is None else v.decode("utf-8")})
            except UnicodeDecodeError:
                headers.append({"key": k, "value_b64": base64.b64encode(v).decode()})
        return {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "key_b64": None if self.key is None else base64.b64encode(self.key).decode(),
            "headers": headers,
            "value_b64": None if self.value is None else base64.b64encode(self.value).decode(),
        }


# --filter fields of a dead letter: its context headers by their short names, plus key and any header.
DLQ_FIELDS = ("error_code", "stage", "exception", "topic", "partition", "model", "event_id", "group", "key")
DLQ_PREFIXES = ("header.",)


def dlq_resolver(dl: DeadLetter) -> Resolver:
    def resolve(name: str) -> str | None:
        if name == "exception":
            return dl.context("exception.class")
        if name == "key":
            return None if dl.key is None else dl.key.decode("utf-8", "replace")
        if name.startswith("header."):
            return header_value(dl.headers, name[len("header.") :])
        return dl.context(name)

    return resolve


@dataclass(frozen=True)
class Filter:
    """Which dead letters a command acts on: ``error_codes`` (any of them; empty means all) and the
    general ``--filter`` conditions."""

    error_codes: frozenset[str] = frozenset()
    where: RecordFilter = field(default_factory=RecordFilter)

    def keeps(self, dl: DeadLetter) -> bool:
        if self.error_codes and dl.error_code not in self.error_codes:
            return False
        return self.where.keeps(dlq_resolver(dl))

    @classmethod
    def parse(cls, error_codes: Sequence[str], filters: Sequence[str]) -> Filter:
        return cls(frozenset(error_codes), parse_filters(filters, DLQ_FIELDS, DLQ_PREFIXES))


def summarise(letters: Iterable[DeadLetter]) -> Counter[tuple[str, str, str]]:
    """Counts by (stage, exception class, error code): the three questions an operator asks first."""
    return Counter((dl.stage, dl.exception_class, dl.error_code) for dl in letters)


def redriven_headers(dl: DeadLetter) -> Headers:
    return [*dl.original_headers(), (REDRIVE_COUNT, str(dl.redrive_count + 1).encode())]


@dataclass
class RedriveReport:
    sent: int = 0
    refused: int = 0  # redriven --max-redrives times already
    no_topic: int = 0  # no __pipeline.errors.topic header, or that topic is gone: nowhere to send it
    failed: int = 0  # the broker did not take it
    filtered: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)


def read_dead_letters(settings: Settings, topic: str) -> Iterator[DeadLetter]:
    """Every dead letter from the beginning to the end offsets of the moment the call starts."""
    partitions = require_topic(settings, topic)
    consumer = probe_consumer(settings, **{"enable.partition.eof": True})
    try:
        marks = watermarks(consumer, topic, partitions)
        plan = plan_range({}, {}, marks)
        for msg in read_range(consumer, topic, plan):
            yield DeadLetter.of(msg)
    finally:
        consumer.close()


def redrive(
    settings: Settings,
    letters: Iterable[DeadLetter],
    flt: Filter,
    max_redrives: int,
    dry_run: bool,
    known_partitions: dict[str, int] | None = None,
) -> RedriveReport:
    """Send each kept dead letter back to its source topic (its original partition when that topic still
    has it, so per-key order is as before), unless it has been redriven ``max_redrives`` times already."""
    report = RedriveReport()
    producer: Producer | None = None if dry_run else Producer(producer_config(settings))
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Message) -> None:
        if err is not None:
            report.failed += 1
            report.sent -= 1
            failures.append(str(err))

    try:
        for dl in letters:
            if not flt.keeps(dl):
                report.filtered += 1
                continue
            target = dl.source_topic
            if not target or (known_partitions is not None and known_partitions.get(target, 0) == 0):
                report.no_topic += 1
                continue
            if dl.redrive_count >= max_redrives:
                report.refused += 1
                continue
            report.sent += 1
            report.by_topic[target] += 1
            if producer is None:
                continue
            kwargs: dict[str, Any] = {}
            part = dl.source_partition
            if part is not None and known_partitions is not None and part < known_partitions.get(target, 0):
                kwargs["partition"] = part
            while True:
                try:
                    producer.produce(
                        target,
                        value=dl.value,
                        key=dl.key,
                        headers=redriven_headers(dl),
                        on_delivery=on_delivery,
                        **kwargs,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
                except KafkaException as exc:
                    report.sent -= 1
                    report.failed += 1
                    failures.append(str(exc))
                    break
            producer.poll(0)
    finally:
        if producer is not None:
            left = producer.flush(30)
            if left:
                report.failed += left
                report.sent -= left
    return report


def partition_counts(settings: Settings, topics: Sequence[str]) -> dict[str, int]:
    """Partition counts of the redrive targets; a topic that is gone maps to 0."""
    from pipeline.kafka.admin import connect_admin

    md = connect_admin(settings).list_topics(timeout=settings.admin_timeout_s)
    return {t: len(md.topics[t].partitions) if t in md.topics else 0 for t in topics}
