"""Records the broker refuses for good, on the real broker: the source event fails alone (its failure is
written instead, under the same ticket), and a record with nothing to fall back to is counted and
skipped; either way the batch completes and is committed."""

from __future__ import annotations

import os
import time

from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.clients import producer_config
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.records import OutRecord
from pipeline.kafka.topics import TopicSpec, create_topics
from pipeline.kafka.writer import OutputWriter
from pipeline.observability.metrics import Metrics
from pipeline.ops.collect import read_topic
from tests.conftest import unique_name
from tests.stages.conftest import Consumed


def test_a_refused_record_is_replaced_by_its_failure_and_the_batch_completes(pipeline_settings: Settings) -> None:
    out, small, dlq, tiny_dlq = (unique_name(n) for n in ("out", "small", "dlq", "tinydlq"))
    create_topics(
        connect_admin(pipeline_settings),
        [
            TopicSpec("out", out, 1, 1),
            TopicSpec("small", small, 1, 1, {"max.message.bytes": "1000"}),
            TopicSpec("dlq", dlq, 1, 1),
            TopicSpec("tinydlq", tiny_dlq, 1, 1),
        ],
    )
    asked: list[tuple[str, bool]] = []

    def instead(record: OutRecord, reason: str, too_large: bool) -> list[OutRecord]:
        asked.append((record.topic, too_large))
        if record.topic == tiny_dlq or record.source is None:
            return []  # a dead letter that cannot be written has nothing to fall back to
        target = tiny_dlq if record.source.value() == b"second" else dlq
        # past the producer's own limit: refused before it leaves this process
        value = os.urandom(2_100_000) if target == tiny_dlq else record.source.value()
        return [OutRecord(target, value, b"k", source=record.source)]

    metrics = Metrics()
    writer = OutputWriter(producer_config(pipeline_settings), metrics, on_refused=instead)
    tracker = OffsetTracker()
    ticket = tracker.open({("in", 0): (0, 2)})
    first, second = Consumed(b"first", offset_=1), Consumed(b"second", offset_=2)
    records = [
        OutRecord(out, b"fine", b"k"),
        # too large for their topic even compressed (random bytes): refused by the broker
        OutRecord(small, os.urandom(5000), b"k", source=first),
        OutRecord(small, os.urandom(5000), b"k", source=second),  # and so is its replacement
    ]
    writer.emit(records, ticket)
    deadline = time.monotonic() + 30
    commits: dict[tuple[str, int], int] = {}
    while not commits and time.monotonic() < deadline:
        commits = tracker.take_commits()
        time.sleep(0.05)
    writer.close()
    assert commits == {("in", 0): 3}  # the batch completed: nothing is read again
    assert sorted(asked) == sorted([(small, True), (small, True), (tiny_dlq, True)])
    assert read_topic(pipeline_settings, tiny_dlq, idle_s=1.0) == []
    assert [r.value for r in read_topic(pipeline_settings, dlq, expected=1, timeout_s=15)] == [b"first"]
    assert read_topic(pipeline_settings, small, idle_s=1.0) == []
    assert writer.stats.refused == 3 and writer.stats.unwritable == 1
    unwritable = {
        s.labels["topic"]: s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "pipeline_records_unwritable_total"
    }
    assert unwritable == {tiny_dlq: 1.0}
