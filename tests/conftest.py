"""Session-wide fixtures: a real Kafka broker and isolated topic names.

The broker is, in order: ``KAFKA_BOOTSTRAP`` when set; Apache Kafka's image in a container when a Docker
engine answers (``tests/containers.py``, the local broker's version); else the project's own
``infra/kafka/kafka-local`` broker, started in a state folder of the suite's own (so it never touches the
broker ``./scripts/run`` started) and stopped afterwards.

Tiers (tests/README.md): a test that uses the broker is marked ``kafka`` here, from its fixtures, and
every test under ``tests/e2e`` is marked ``e2e`` as well, so ``pytest -m "not kafka"`` runs without one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings, Topics

REPO = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO / "infra" / "kafka" / "kafka-local"
TEST_STATE = REPO / "infra" / "kafka" / ".local" / "test-state"


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if folder == "e2e":
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.kafka)
        elif "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    if _docker_answers():
        from tests.containers import ApacheKafkaContainer

        with ApacheKafkaContainer() as kafka:
            address = kafka.get_bootstrap_server()
            os.environ["KAFKA_BOOTSTRAP"] = address
            yield address
        os.environ.pop("KAFKA_BOOTSTRAP", None)
        return
    env = {**os.environ, "KAFKA_LOCAL_STATE": str(TEST_STATE)}
    env.pop("KAFKA_PORT", None)
    started = subprocess.run([str(KAFKA_LOCAL), "start"], capture_output=True, text=True, env=env, timeout=600)
    if started.returncode != 0:
        pytest.exit(f"the test broker did not start:\n{started.stderr[-3000:]}", returncode=3)
    address = started.stdout.strip().splitlines()[-1]
    os.environ["KAFKA_BOOTSTRAP"] = address
    try:
        yield address
    finally:
        os.environ.pop("KAFKA_BOOTSTRAP", None)
        subprocess.run([str(KAFKA_LOCAL), "stop"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(TEST_STATE, ignore_errors=True)


def committed_total(settings: Settings, group: str, topic: str, partitions: int) -> int:
    """Sum of a group's committed offsets on a topic (retrying while a new broker elects coordinators)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from pipeline.kafka.clients import consumer_config

    consumer = Consumer(consumer_config(settings, group))
    try:
        for attempt in range(20):
            try:
                offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
                return sum(max(tp.offset, 0) for tp in offsets)
            except KafkaException:
                if attempt == 19:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()
    return 0


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def unique_topic() -> str:
    return unique_name("test")


@pytest.fixture
def pipeline_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings whose topics and group belong to this test alone, so tests never see each other's data."""
    tag = uuid.uuid4().hex[:8]
    topics = Topics(**{role: f"{name}.{tag}" for role, name in Topics().all().items()})
    return Settings(
        bootstrap_servers=kafka_bootstrap,
        topics=topics,
        group=f"pipeline-test-{tag}",
        partitions=2,
    )
