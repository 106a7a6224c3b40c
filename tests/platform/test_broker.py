"""The platform against the real broker: round trip, topic creation, and an unreachable broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer

from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.kafka.topics import create_topics, describe_topics, topic_specs
from tests.conftest import unique_name

PIPELINE = [sys.executable, "-m", "pipeline.cli.main"]


def test_10k_keyed_messages_with_headers_round_trip(pipeline_settings: Settings, unique_topic: str) -> None:
    admin = connect_admin(pipeline_settings)
    spec = topic_specs(pipeline_settings)[0]
    create_topics(admin, [type(spec)("t", unique_topic, 3, 1, {})])
    n = 10_000
    producer = Producer(producer_config(pipeline_settings))
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for i in range(n):
        producer.produce(
            unique_topic,
            key=f"key-{i % 97}".encode(),
            value=f"value-{i}".encode(),
            headers=[("seq", str(i).encode()), ("bin", bytes([i % 256, 0, 255]))],
            on_delivery=on_delivery,
        )
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []

    consumer = Consumer(consumer_config(pipeline_settings, unique_name("g")))
    consumer.subscribe([unique_topic])
    seen: dict[int, tuple[bytes, bytes, list[tuple[str, bytes]], int]] = {}
    deadline = time.monotonic() + 60
    try:
        while len(seen) < n and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                assert msg.error() is None, msg.error()
                headers = msg.headers() or []
                seq = int(dict(headers)["seq"])
                seen[seq] = (msg.key(), msg.value(), headers, msg.partition())
    finally:
        consumer.close()
    assert len(seen) == n
    partition_of_key: dict[bytes, int] = {}
    for i, (key, value, headers, partition) in seen.items():
        assert key == f"key-{i % 97}".encode()
        assert value == f"value-{i}".encode()
        assert headers == [("seq", str(i).encode()), ("bin", bytes([i % 256, 0, 255]))]
        assert partition_of_key.setdefault(key, partition) == partition  # one key, one partition


def _cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=Path(__file__).parents[2]
    )


def _env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["KAFKA_BOOTSTRAP"] = settings.bootstrap_servers
    for role, name in settings.topics.all().items():
        env[f"PIPELINE_TOPICS__{role.upper()}"] = name
    env["PIPELINE_PARTITIONS"] = "3"
    return env


def test_topics_create_is_idempotent_and_describe_lists_them(pipeline_settings: Settings) -> None:
    env = _env_for(pipeline_settings)
    first = _cli(["topics", "create"], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == 7
    second = _cli(["topics", "create"], env)
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout and second.stdout.count("exists") == 7

    described = _cli(["topics", "describe"], env)
    assert described.returncode == 0, described.stderr
    for name in pipeline_settings.topics.all().values():
        assert name in described.stdout

    states = describe_topics(connect_admin(pipeline_settings), list(pipeline_settings.topics.all().values()))
    assert states[pipeline_settings.topics.input].partitions == 3
    assert states[pipeline_settings.topics.control].partitions == 1
    dead = states[pipeline_settings.topics.dead_letter]
    assert int(dead.config["retention.ms"]) == pipeline_settings.dead_letter_retention_ms
    assert int(dead.config["retention.ms"]) > int(states[pipeline_settings.topics.input].config["retention.ms"])


def test_describe_reports_missing_topics(pipeline_settings: Settings) -> None:
    result = _cli(["topics", "describe"], _env_for(pipeline_settings))
    assert result.returncode == 1
    assert "missing" in result.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_broker_fails_fast_with_one_clear_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["KAFKA_BOOTSTRAP"] = f"127.0.0.1:{_closed_port()}"
    for args in (["topics", "create"], ["topics", "describe"]):
        started = time.monotonic()
        result = _cli(args, env, timeout=30)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        assert elapsed < 15
        assert "Traceback" not in result.stderr + result.stdout
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "cannot reach Kafka at 127.0.0.1" in lines[0], result.stderr
