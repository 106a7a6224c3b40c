"""A partition the client never starts reading, on the real broker: the reader finds it, assigns it again,
reports it, and reads it from its committed offset once the client can.

Partitions are made to wait the way a broker can leave them: a committed offset held back by a transaction
that stays open (a read_committed consumer asks for stable offsets, the coordinator answers
UNSTABLE_OFFSET_COMMIT until the transaction ends, and librdkafka retries without a word)."""

from __future__ import annotations

import logging
import queue
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.batching import Batch, BatchPolicy
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.reader import BatchReader
from pipeline.observability.health import Health
from pipeline.observability.metrics import Metrics
from tests.conftest import unique_name
from tests.kafka.test_reader_writer import _QueueHandOff, _topics


def test_a_partition_held_from_starting_is_assigned_again_reported_and_read_from_its_commit(
    pipeline_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = pipeline_settings
    src, group = unique_name("src"), unique_name("g")
    _topics(settings, src, partitions=2)
    filler = Producer(producer_config(settings))
    for p in (0, 1):
        for i in range(50):
            filler.produce(src, value=f"{p}-{i}".encode(), partition=p)
    assert filler.flush(30) == 0

    # An open transaction holds partition 0's committed offset (20) back from every stable read.
    holder = Producer(
        producer_config(settings, **{"transactional.id": unique_name("tx"), "transaction.timeout.ms": 120_000})
    )
    holder.init_transactions(30)
    holder.begin_transaction()
    metadata_source = Consumer(consumer_config(settings, group))
    holder.send_offsets_to_transaction([TopicPartition(src, 0, 20)], metadata_source.consumer_group_metadata(), 30)
    metadata_source.close()

    metrics = Metrics()
    health = Health(metrics, ["test"])
    batches: queue.Queue[Batch] = queue.Queue()
    tracker = OffsetTracker()
    reader = BatchReader(
        "test",
        consumer_config(
            settings, group, **{"session.timeout.ms": 10_000, "partition.assignment.strategy": "cooperative-sticky"}
        ),
        [src],
        BatchPolicy(100, 20),
        tracker,
        _QueueHandOff(batches),
        metrics,
        health=health,
        start_within_s=2.0,
    )
    read: dict[int, list[int]] = {0: [], 1: []}

    def take(until: float) -> None:
        while time.monotonic() < until:
            try:
                batch = batches.get(timeout=0.1)
            except queue.Empty:
                continue
            for msg in batch.messages:
                read[msg.partition()].append(msg.offset())
            tracker.settle(batch.ticket, ok=True)

    caplog.set_level(logging.ERROR, logger="pipeline.reader")
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while health.checks()["fetching"] and time.monotonic() < deadline:
            take(time.monotonic() + 0.2)
        assert not health.checks()["fetching"], "the partition that cannot start was never reported"
        # librdkafka asks for both partitions' offsets in one request and retries it whole: neither starts
        assert read == {0: [], 1: []}
        assert metrics.partitions_reassigned.labels("test")._value.get() >= 1
        assert any(
            "assigned but never fetched" in r.getMessage() and f"{src}[0]" in r.getMessage() for r in caplog.records
        )

        holder.commit_transaction(30)  # the committed offset becomes readable: 20
        deadline = time.monotonic() + 30
        while (len(read[0]) + len(read[1]) < 80 or not health.checks()["fetching"]) and time.monotonic() < deadline:
            take(time.monotonic() + 0.2)
        # each from its commit (partition 1 has none: from the start), nothing before it, nothing skipped
        assert read == {0: list(range(20, 50)), 1: list(range(50))}
        assert health.checks()["fetching"]
    finally:
        reader.stop()
        reader.join(30)
