"""The inference reader's fetch-ahead on the real broker: once its client holds that many records it stops
asking the broker for more, and it asks again once it holds fewer.

A reader that had fetched a slow model's whole backlog would otherwise send a fetch every
``reader_fetch_wait_ms`` for records not there yet. The count is librdkafka's own statistics of the fetch
requests it sent."""

from __future__ import annotations

import json
import time

from confluent_kafka import Consumer

from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.topics import TopicSpec, create_topics
from pipeline.worker.readers import reader_config
from tests.harness import produce_raw

BACKLOG = 1_000
IDLE_S = 2.0


def _fill(settings: Settings, topic: str, n: int) -> None:
    produce_raw(settings, topic, ((str(i).encode(), b"x" * 100, None) for i in range(n)))


class _Reader:
    """A consumer on the inference reader's config that keeps the fetch requests its statistics report."""

    def __init__(self, settings: Settings, ahead: int | None) -> None:
        conf = reader_config(settings, "inference", ahead)
        conf |= {"statistics.interval.ms": 100, "stats_cb": self._stats}
        self.fetches = 0
        self.consumer = Consumer(conf)
        self.consumer.subscribe([settings.topics.inference])
        self.read = 0

    def _stats(self, raw: str) -> None:
        self.fetches = sum(b.get("req", {}).get("Fetch", 0) for b in json.loads(raw)["brokers"].values())

    def poll(self, timeout_s: float) -> None:
        msg = self.consumer.poll(timeout_s)
        if msg is not None and msg.error() is None:
            self.read += 1

    def read_until(self, n: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.read < n:
            assert time.monotonic() < deadline, f"read {self.read} of {n} records"
            self.poll(0.05)

    def fetches_while_idle(self) -> int:
        """Fetch requests sent over IDLE_S while reading a record per 100 ms (a poll serves the statistics;
        the client's queue stays far above the fetch-ahead)."""
        self.poll(0)
        time.sleep(0.2)
        self.poll(0)
        before = self.fetches
        end = time.monotonic() + IDLE_S
        while time.monotonic() < end:
            time.sleep(0.1)
            self.poll(0)
        return self.fetches - before


def _reader_holding_the_backlog(settings: Settings, ahead: int | None) -> _Reader:
    create_topics(connect_admin(settings), [TopicSpec("inference", settings.topics.inference, 2, 1)])
    _fill(settings, settings.topics.inference, BACKLOG)
    reader = _Reader(settings, ahead)
    reader.read_until(1)
    time.sleep(0.5)  # the whole backlog fetched
    return reader


def test_a_reader_holding_its_fetch_ahead_sends_no_fetch(pipeline_settings: Settings) -> None:
    reader = _reader_holding_the_backlog(pipeline_settings, ahead=200)
    try:
        assert reader.fetches_while_idle() <= 2
        # Once it holds fewer, it fetches again: with the backlog read, a record written now is read.
        reader.read_until(BACKLOG)
        _fill(pipeline_settings, pipeline_settings.topics.inference, 1)
        reader.read_until(BACKLOG + 1, timeout_s=10.0)
    finally:
        reader.consumer.close()


def test_without_a_fetch_ahead_a_reader_at_the_end_keeps_fetching(pipeline_settings: Settings) -> None:
    """The control: the same reader without it, on the same backlog, asks the broker over and over."""
    reader = _reader_holding_the_backlog(pipeline_settings, ahead=None)
    try:
        assert reader.fetches_while_idle() >= 20
    finally:
        reader.consumer.close()
