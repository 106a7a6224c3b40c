"""The model breaks and heals mid-stream, on the real broker: events wait in Kafka while the circuit is
open (nothing dead-lettered), and every one is answered once the model is back."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.kafka.batching import Batch, BatchPolicy
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.reader import BatchReader
from pipeline.kafka.retry import RetryPolicy
from pipeline.kafka.writer import OutputWriter
from pipeline.model.breaker import CircuitBreaker
from pipeline.model.service import ModelService
from pipeline.observability.health import Health
from pipeline.observability.metrics import Metrics
from pipeline.ops.collect import count, read_topic
from pipeline.ops.generate import tiny_requests
from pipeline.serde import Codecs, EventCodec
from pipeline.stages.failures import FailureRouter
from pipeline.stages.inference import InferenceStage
from pipeline.stages.isolation import Isolated
from tests.conftest import committed_total
from tests.harness import create_pipeline_topics, produce_requests
from tests.kafka.test_reader_writer import _QueueHandOff
from tests.stages.test_inference_stage import FlakyModels


def _agent(batches: queue.Queue[Batch], stage: Isolated, writer: OutputWriter, stop: threading.Event) -> None:
    """Stands in for the Faust agent: process each batch, emit its records, or fail its ticket."""
    while not stop.is_set():
        try:
            batch = batches.get(timeout=0.1)
        except queue.Empty:
            continue
        if not batch.ticket.live:
            continue
        try:
            writer.emit(asyncio.run(stage.process(batch)), batch.ticket)
        except Exception as exc:
            batch.ticket.tracker.fail(batch.ticket, exc)


def test_a_model_outage_holds_events_in_kafka_and_they_are_all_answered_after(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings.model_copy(update={"model": "tiny", "device": "cpu", "model_cache": tmp_path})
    create_pipeline_topics(settings)
    n = 3000
    ids = produce_requests(settings, tiny_requests(n, seed=17), topic=settings.topics.inference)
    metrics = Metrics()
    health = Health(metrics, ["inference"])
    flaky = FlakyModels(ModelService.from_settings(settings))
    # The model breaks mid-stream, once it has answered half the events: switched from the test's thread,
    # the tiny model could answer the whole backlog before the switch was seen, and the circuit never open.
    flaky.down_after = n // 2
    breaker = CircuitBreaker("tiny", flaky.probe, open_after=2, backoff_s=0.2, max_backoff_s=0.5)
    codecs = Codecs.from_settings(settings)
    router = FailureRouter(codecs.error, settings.topics.error, settings.topics.dead_letter, "g", metrics)
    stage = InferenceStage(
        EventCodec.from_settings(settings, "request", validate=False),
        codecs.result,
        flaky,
        router,
        settings.topics.output,
        "w",
        metrics,
        breaker,
        batch_size=32,
    )
    writer = OutputWriter(producer_config(settings), metrics)
    tracker = OffsetTracker()
    batches: queue.Queue[Batch] = queue.Queue(maxsize=2)
    group = f"{settings.group}.inference"
    reader = BatchReader(
        "inference",
        consumer_config(settings, group, **{"session.timeout.ms": 10_000}),
        [settings.topics.inference],
        BatchPolicy(32, 5),
        tracker,
        _QueueHandOff(batches),
        metrics,
        health=health,
        gate=lambda: "the model's circuit is open" if breaker.is_open() else None,
        backoff=RetryPolicy(base_delay_s=0.05, max_delay_s=0.3),
    )
    stop = threading.Event()
    agent = threading.Thread(target=_agent, args=(batches, Isolated(stage, router, metrics), writer, stop), daemon=True)
    agent.start()
    reader.start()
    seen: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while count(settings, settings.topics.output) < n // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while not breaker.is_open() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert breaker.is_open()
        time.sleep(1.0)
        at_open = count(settings, settings.topics.output)
        time.sleep(1.0)
        assert count(settings, settings.topics.output) == at_open  # nothing is answered while it is open
        assert not health.checks()["flowing"] and "circuit" in health.holding_reasons()["inference"]
        assert count(settings, settings.topics.dead_letter) == 0 and count(settings, settings.topics.error) == 0
        seen.append(metrics.rewinds.labels("inference")._value.get())
        flaky.down = False  # it heals: the next probe closes the circuit
        deadline = time.monotonic() + 60
        while committed_total(settings, group, settings.topics.inference, settings.partitions) < n:
            assert time.monotonic() < deadline, "not every event was answered after the model came back"
            time.sleep(0.2)
        assert not breaker.is_open() and health.checks()["flowing"]
    finally:
        reader.stop()
        reader.join(15)
        stop.set()
        writer.close()
        breaker.close()
    assert reader.error is None
    out = read_topic(settings, settings.topics.output, expected=count(settings, settings.topics.output), timeout_s=60)
    assert {codecs.result.decode(r.value)["event_id"] for r in out} == set(ids)  # 0 lost
    assert count(settings, settings.topics.dead_letter) == 0  # nothing dead-lettered, open or not
    assert seen[0] >= 2  # the failed batches were read again, not skipped
