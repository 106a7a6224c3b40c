"""Read records back from a topic: what tests, benchmarks and `tail` need."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int
    received_at: float  # this reader's wall clock, seconds

    @classmethod
    def of(cls, msg: Message, received_at: float) -> Record:
        return cls(
            msg.topic(),
            msg.partition(),
            msg.offset(),
            msg.key(),
            msg.value(),
            list(msg.headers() or []),
            msg.timestamp()[1],
            received_at,
        )


def end_offsets(settings: Settings, topic: str, timeout_s: float = 30.0) -> dict[int, int]:
    """Each partition's end offset; asked again while a broker that just started elects its leaders."""
    consumer = Consumer(consumer_config(settings, f"{settings.group}.watch-{uuid.uuid4().hex[:8]}"))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                md = consumer.list_topics(topic, timeout=10).topics[topic]
                return {
                    p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions
                }
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


def count(settings: Settings, topic: str) -> int:
    return sum(end_offsets(settings, topic).values())


def read_topic(
    settings: Settings,
    topic: str,
    *,
    expected: int | None = None,
    timeout_s: float = 60.0,
    idle_s: float = 2.0,
    stop: Callable[[list[Record]], bool] | None = None,
) -> list[Record]:
    """Everything on ``topic`` from the beginning: until ``expected`` records, ``stop`` says so, or the
    topic has been quiet for ``idle_s`` after reaching its end offsets (or ``timeout_s`` passes)."""
    consumer = Consumer(
        consumer_config(settings, f"{settings.group}.read-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": False})
    )
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        while time.monotonic() < deadline:
            # poll() returns with the first record (consume() would wait for its whole count or its
            # timeout, and stamp early records late: latency is measured with the receive time); what is
            # already fetched is then taken without waiting.
            first = consumer.poll(0.05)
            now = time.time()
            batch = [] if first is None else [first, *consumer.consume(999, timeout=0)]
            for msg in batch:
                if msg.error() is None:
                    records.append(Record.of(msg, now))
            if batch:
                last = time.monotonic()
            if expected is not None and len(records) >= expected:
                break
            if stop is not None and stop(records):
                break
            if expected is None and stop is None and time.monotonic() - last > idle_s:
                break
    finally:
        consumer.close()
    return records
