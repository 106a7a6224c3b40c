"""The platform against the real broker: round trip, topic creation, an unreachable broker, a three-node
cluster that loses a node, and a broker stopped and started again. The rules for replication and the
dead-letter topic's size limit are checked without a broker too, since the local broker shows only one
broker count."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from pipeline.config import Settings, Topics
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.kafka.topics import (
    BROKER_MESSAGE_MAX_BYTES,
    DEAD_LETTER_HEADER_BYTES,
    Cluster,
    TopicSpec,
    create_topics,
    dead_letter_max_message_bytes,
    describe_topics,
    min_insync_for,
    replication_for,
    topic_specs,
)
from pipeline.serde.deadletter import MAX_MESSAGE, MAX_STACKTRACE, DeadLetterContext
from tests.conftest import KAFKA_LOCAL, unique_name

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
    assert Settings().admin_timeout_s == 10.0  # the default: one clear line after about 10 s
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["KAFKA_BOOTSTRAP"] = f"127.0.0.1:{_closed_port()}"
    env["PIPELINE_ADMIN_TIMEOUT_S"] = "3"
    for args in (["topics", "create"], ["topics", "describe"]):
        started = time.monotonic()
        result = _cli(args, env, timeout=30)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        assert elapsed < 8
        assert "Traceback" not in result.stderr + result.stdout
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "cannot reach Kafka at 127.0.0.1" in lines[0], result.stderr


# ------------------------------------------------------------------------------ rules, without a broker


@pytest.mark.parametrize(
    ("brokers", "configured", "replication", "min_isr"),
    [(1, None, 1, 1), (2, None, 2, 1), (3, None, 3, 2), (5, None, 3, 2), (3, 1, 1, 1), (5, 4, 4, 2)],
)
def test_replication_follows_the_cluster_unless_configured(
    brokers: int, configured: int | None, replication: int, min_isr: int
) -> None:
    assert replication_for(brokers, configured) == replication
    assert min_insync_for(replication) == min_isr
    settings = Settings(bootstrap_servers="127.0.0.1:1", replication_factor=configured)
    for spec in topic_specs(settings):
        resolved = spec.resolved(Cluster(brokers))
        assert resolved.replication == replication
        assert resolved.config["min.insync.replicas"] == str(min_isr)
    # a topic's own min.insync.replicas wins over the rule
    own = TopicSpec("t", "t", 1, None, {"min.insync.replicas": "1"}).resolved(Cluster(brokers))
    assert own.config["min.insync.replicas"] == "1"


@pytest.mark.parametrize(
    ("max_message_bytes", "broker_limit", "expected"),
    [
        (1_000_000, BROKER_MESSAGE_MAX_BYTES, 1_048_588 + 65_536),  # the defaults: the broker's limit rules
        (5_000_000, BROKER_MESSAGE_MAX_BYTES, 5_000_000 + 65_536),  # the pipeline takes larger records
        (1_000_000, 2_000_000, 2_000_000 + 65_536),  # a broker configured for larger records
    ],
)
def test_dead_letter_topic_holds_the_largest_input_record_plus_headers(
    max_message_bytes: int, broker_limit: int, expected: int
) -> None:
    assert dead_letter_max_message_bytes(max_message_bytes, broker_limit) == expected
    settings = Settings(bootstrap_servers="127.0.0.1:1", max_message_bytes=max_message_bytes)
    resolved = {s.role: s.resolved(Cluster(3, broker_limit)) for s in topic_specs(settings)}
    assert resolved["dead_letter"].config["max.message.bytes"] == str(expected)
    assert all("max.message.bytes" not in s.config for role, s in resolved.items() if role != "dead_letter")


def test_dead_letter_headers_fit_their_room() -> None:
    """The longest context the worker writes (capped texts of 4-byte characters, long names) in the 64 KiB."""
    wide = "\U0001f600"
    ctx = DeadLetterContext(
        topic="t" * 249,
        partition=2**31 - 1,
        offset=2**63 - 1,
        timestamp=2**63 - 1,
        group="g" * 255,
        stage="inference",
        error_code="E" * 64,
        attempts=99,
        exception_class="c" * 255,
        exception_message=wide * MAX_MESSAGE * 2,
        stacktrace=wide * MAX_STACKTRACE * 2,
        event_id="e" * 64,
        model="m" * 255,
        batch_id="b" * 64,
    )
    # Kafka's record format: a varint for each length (5 bytes at most) and the header's bytes
    size = sum(10 + len(k.encode()) + len(v) for k, v in ctx.headers())
    assert size < DEAD_LETTER_HEADER_BYTES


# ------------------------------------------------------------------------- the local broker's commands


def _kafka_local(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KAFKA_LOCAL), *args], capture_output=True, text=True, env=env, timeout=timeout)


def _local_env(state: Path) -> dict[str, str]:
    """A state folder of the test's own; the metadata check uses this interpreter's confluent-kafka."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_PORT"}
    env.update(KAFKA_LOCAL_STATE=str(state), KAFKA_LOCAL_PYTHON=sys.executable)
    return env


def _own_topics(bootstrap: str, partitions: int) -> Settings:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(**{role: f"{name}.{tag}" for role, name in Topics().all().items()})
    return Settings(bootstrap_servers=bootstrap, topics=topics, partitions=partitions, replication_factor=None)


def _read_all(settings: Settings, topic: str, partitions: int, expected: int, timeout_s: float = 30) -> Counter[int]:
    """Every record's sequence number and how often it is in the topic (assigned, no group to wait for)."""
    consumer = Consumer(consumer_config(settings, unique_name("g")))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: Counter[int] = Counter()
    deadline = time.monotonic() + timeout_s
    try:
        while sum(seen.values()) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                assert msg.error() is None, msg.error()
                seen[int(msg.value() or b"-1")] += 1
        ends = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()
    assert ends == sum(seen.values()), "the topic holds records that were not read back"
    return seen


@pytest.mark.kafka
@pytest.mark.slow
def test_three_node_cluster_keeps_every_acknowledged_record_while_a_node_crashes(tmp_path: Path) -> None:
    env = _local_env(tmp_path / "cluster")
    started_at = time.monotonic()
    try:
        started = _kafka_local(env, "start", "--nodes", "3")
        assert started.returncode == 0, started.stderr
        bootstrap = started.stdout.strip().splitlines()[-1]
        addresses = bootstrap.split(",")
        assert len(addresses) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
        timings = {"start": time.monotonic() - started_at}

        settings = _own_topics(bootstrap, partitions=3)
        created = _cli(["topics", "create"], _env_for(settings))
        assert created.returncode == 0, created.stderr
        names = list(settings.topics.all().values())
        states = describe_topics(connect_admin(settings), names)
        assert set(states) == set(names)
        for state in states.values():
            assert (state.replication, state.config["min.insync.replicas"]) == (3, "2"), state
        dead = states[settings.topics.dead_letter]
        assert int(dead.config["max.message.bytes"]) == BROKER_MESSAGE_MAX_BYTES + DEAD_LETTER_HEADER_BYTES

        n = 3000
        acked: list[int] = []
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                acked.append(int(msg.value() or b"-1"))
            else:
                failures.append(str(err))

        topic = settings.topics.input
        leaders = {
            p.leader for p in connect_admin(settings).list_topics(topic, timeout=10).topics[topic].partitions.values()
        }
        assert 2 in leaders  # the crash takes partition leaders away, not only followers
        producer = Producer(producer_config(settings))
        producing = time.monotonic()
        for i in range(n):
            producer.produce(topic, key=str(i % 50).encode(), value=str(i).encode(), on_delivery=on_delivery)
            # Paced, so that records are sent over the seconds the cluster needs to notice the crash and
            # move the partitions' leaders; at the crash, some are acknowledged and some still in flight.
            producer.poll(0.001)
            if i == n // 3:
                deadline = time.monotonic() + 30
                while len(acked) < n // 6 and time.monotonic() < deadline:
                    producer.poll(0.05)
                killed = _kafka_local(env, "kill-node", "2")
                assert killed.returncode == 0, killed.stderr
                acked_at_kill = len(acked)
        assert producer.flush(90) == 0
        timings["produce"] = time.monotonic() - producing
        assert failures == []
        assert sorted(acked) == list(range(n))
        assert _kafka_local(env, "status").returncode == 1  # one node down

        seen = _read_all(settings, topic, 3, n)
        assert set(seen) == set(acked)
        assert [i for i, count in seen.items() if count != 1] == []  # exactly once: idempotence through retries

        restarting = time.monotonic()
        back = _kafka_local(env, "start-node", "2")
        assert back.returncode == 0, back.stderr
        assert back.stdout.strip().splitlines()[-1] == addresses[1]  # its recorded port
        timings["start-node"] = time.monotonic() - restarting
        status = _kafka_local(env, "status")
        assert status.returncode == 0 and status.stdout.strip().splitlines()[-1] == bootstrap, status.stderr
        print(
            f"{acked_at_kill} of {n} acknowledged at the kill;", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        )
    finally:
        stopped = _kafka_local(env, "stop")
        assert stopped.returncode == 0, stopped.stderr


@pytest.mark.kafka
def test_one_node_broker_stopped_and_started_keeps_its_port_and_data(tmp_path: Path) -> None:
    env = _local_env(tmp_path / "broker")
    try:
        started = _kafka_local(env, "start")
        assert started.returncode == 0, started.stderr
        address = started.stdout.strip().splitlines()[-1]
        assert (tmp_path / "broker" / "server.properties").is_file()  # the single node's layout
        assert not (tmp_path / "broker" / "nodes").exists()

        settings = _own_topics(address, partitions=2)
        spec = TopicSpec("input", settings.topics.input, 2, None)
        create_topics(connect_admin(settings), [spec])
        state = describe_topics(connect_admin(settings), [spec.name])[spec.name]
        assert (state.replication, state.config["min.insync.replicas"]) == (1, "1")
        producer = Producer(producer_config(settings))
        for i in range(100):
            producer.produce(spec.name, key=str(i % 7).encode(), value=str(i).encode())
        assert producer.flush(30) == 0

        stopped = _kafka_local(env, "stop-node", "1")
        assert stopped.returncode == 0, stopped.stderr
        assert _kafka_local(env, "status").returncode == 1
        back = _kafka_local(env, "start-node", "1")
        assert back.returncode == 0, back.stderr
        assert back.stdout.strip().splitlines()[-1] == address

        seen = _read_all(settings, spec.name, 2, 100)
        assert seen == Counter(range(100))
    finally:
        stopped = _kafka_local(env, "stop")
        assert stopped.returncode == 0, stopped.stderr
