"""Exactly-once, on the real broker: whatever crashes where, a read_committed consumer of the output,
error and dead-letter topics sees each event answered exactly once (0 lost, 0 twice)."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config
from pipeline.ops.collect import count, read_topic
from pipeline.ops.generate import tiny_requests
from pipeline.serde import Codecs, build_request
from tests.e2e.conftest import kafka_local
from tests.harness import WorkerProcess, create_pipeline_topics, produce_raw, wait_count

EOS = ("--model", "tiny", "--batch-size", "100", "--guarantee", "exactly_once")
POISON = {"PIPELINE_HOOKS_POST": '["tests.e2e.hooks:poison_tagged"]'}


def _load(settings: Settings, n: int, seed: int, poison_every: int = 0) -> list[str]:
    codec = Codecs.from_settings(settings).request
    ids: list[str] = []
    records = []
    for i, request in enumerate(tiny_requests(n, seed=seed)):
        if poison_every and i % poison_every == 7:
            request = build_request(model="tiny", tensors={"x": np.ones(8, np.float32)}, attributes={"poison": "1"})
        ids.append(request["event_id"])
        records.append((f"key-{i % 50}".encode(), codec.encode(request), None))
    produce_raw(settings, settings.topics.input, records)
    return ids


def _answers(settings: Settings) -> tuple[Counter[str], int]:
    """Per event, how often a read_committed consumer sees it answered (a result or an error event), and
    how many dead letters there are."""
    codecs = Codecs.from_settings(settings)
    answers: Counter[str] = Counter()
    for topic, codec in ((settings.topics.output, codecs.result), (settings.topics.error, codecs.error)):
        for record in read_topic(settings, topic, idle_s=3.0, timeout_s=60):
            answers[codec.decode(record.value)["event_id"]] += 1
    return answers, len(read_topic(settings, settings.topics.dead_letter, idle_s=1.0))


def _until_answered(settings: Settings, n: int, *workers: WorkerProcess, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (answered := len(_answers(settings)[0])) < n:
        if time.monotonic() > deadline:
            logs = "\n".join(f"==== worker {k}:\n{w.output()[-6000:]}" for k, w in enumerate(workers, 1))
            raise AssertionError(
                f"{answered} of {n} events answered within {timeout_s:.0f} s\n{_where(settings)}{logs}"
            )


def _where(settings: Settings) -> str:
    """Where the unanswered events wait, for the failure message: per partition of the topics the roles
    read and of the output topic, its end, the end a read_committed reader sees (lower while a transaction
    is open on it), and the reading role's committed offset (read without waiting for open transactions)."""
    lines = []
    topics = settings.topics
    for role, topic in (("input", topics.input), ("inference", topics.inference), ("output", topics.output)):
        group = f"{settings.group}.{role}"
        plain = Consumer(consumer_config(settings, group, **{"isolation.level": "read_uncommitted"}))
        stable = Consumer(consumer_config(settings, group))
        try:
            parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
            committed = {tp.partition: tp.offset for tp in plain.committed(parts, timeout=10)}
            for tp in parts:
                end = plain.get_watermark_offsets(tp, timeout=10)[1]
                visible = stable.get_watermark_offsets(tp, timeout=10)[1]
                done = committed[tp.partition] if role != "output" else "-"
                lines.append(f"{role} [{tp.partition}]: end {end}, read_committed end {visible}, committed {done}")
        except KafkaException as exc:
            lines.append(f"{role}: {exc}")
        finally:
            plain.close()
            stable.close()
    return "\n".join(lines) + "\n"


def test_kill_9_mid_stream_answers_every_event_exactly_once_poison_included(e2e_settings: Settings) -> None:
    settings = e2e_settings
    n = 10_000
    ids = _load(settings, n, seed=61, poison_every=500)
    args = (*EOS, "--worker-id", "eos-crash")
    first = WorkerProcess(settings, *args, **POISON).start()
    try:
        seen = wait_count(settings, settings.topics.output, n // 3, timeout_s=120)
        assert first.alive() and seen < n
        first.kill()
    finally:
        if first.alive():
            first.kill()
    with WorkerProcess(settings, *args, **POISON) as second:
        _until_answered(settings, n, second)
        assert second.alive()
    answers, letters = _answers(settings)
    assert set(answers) == set(ids)  # 0 lost
    assert max(answers.values()) == 1, sum(c - 1 for c in answers.values())  # 0 twice
    assert letters == n // 500  # the poison events, dead-lettered once
    # the topics themselves hold more (aborted transactions): only read_committed readers see once
    print(f"exactly once across kill -9: {count(settings, settings.topics.output)} offsets for {n} events")


def test_a_broker_outage_and_a_second_worker_joining_answer_every_event_exactly_once(
    pipeline_settings: Settings, own_broker: tuple[str, dict[str, str]]
) -> None:
    bootstrap, env = own_broker
    settings = pipeline_settings.model_copy(update={"bootstrap_servers": bootstrap, "partitions": 4})
    create_pipeline_topics(settings)
    n = 10_000
    ids = _load(settings, n, seed=62)
    with WorkerProcess(settings, *EOS, "--worker-id", "eos-a") as first:
        wait_count(settings, settings.topics.output, n // 4, timeout_s=120)
        kafka_local(env, "stop")
        time.sleep(10)
        kafka_local(env, "start")
        with WorkerProcess(settings, *EOS, "--worker-id", "eos-b") as second:
            _until_answered(settings, n, first, second, timeout_s=180)
            assert first.alive() and second.alive()
    answers, _ = _answers(settings)
    assert set(answers) == set(ids)
    assert max(answers.values()) == 1, sum(c - 1 for c in answers.values())
