"""Exactly once on the broker: the delivery report of a record purged by an abort dooms no later
transaction. Such reports are served after the next transaction has begun; counted as that one's failure,
each abort purged the next one's records and doomed the one after, and a partition was read again for good
(seen after a broker restart: "Local: Purged in queue" on every attempt)."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.records import OutRecord
from pipeline.kafka.transactions import TransactionalWriter
from pipeline.kafka.writer import _Out
from pipeline.observability.metrics import Metrics
from tests.conftest import unique_name


def test_a_purged_record_of_an_aborted_transaction_does_not_doom_the_next(pipeline_settings: Settings) -> None:
    settings = pipeline_settings
    writer = TransactionalWriter(producer_config(settings), Metrics(), transactional_id=unique_name("tx"))
    consumer = Consumer(consumer_config(settings, unique_name("g")))
    try:
        tracker = OffsetTracker()
        voided = tracker.open({("src", 0): (0, 0)})
        tracker.kill_all()  # the abort that purged it voided its batch first
        purged = _Out(OutRecord(settings.topics.output, b"x", None), voided)
        writer._on_failed(purged, KafkaError(KafkaError._PURGE_QUEUE))
        writer._on_failed(purged, KafkaError(KafkaError._PURGE_INFLIGHT))
        assert writer._abort_reason is None
        assert writer.commit(tracker, consumer.consumer_group_metadata()) == {}  # commits: nothing doomed it

        live = tracker.open({("src", 0): (1, 1)})
        writer._on_failed(
            _Out(OutRecord(settings.topics.output, b"y", None), live), KafkaError(KafkaError._MSG_TIMED_OUT)
        )
        assert writer._abort_reason is not None and "timed out" in writer._abort_reason  # any other failure does
        assert live.failed
    finally:
        consumer.close()
        writer.close()
