"""One Kafka version wherever the suite's broker comes from: the local broker's Maven pin, the Docker
Compose file for users with a Docker engine, and the container the suite starts where Docker runs."""

from __future__ import annotations

import re

from tests.containers import REPO, ApacheKafkaContainer, kafka_image, kafka_version


def test_compose_and_the_test_container_run_the_local_brokers_kafka_version() -> None:
    version = kafka_version()
    assert re.fullmatch(r"4\.\d+\.\d+", version), version
    compose = (REPO / "infra" / "docker-compose.yml").read_text(encoding="utf-8")
    assert re.findall(r"image:\s*(\S+)", compose) == [f"apache/kafka:{version}"]
    assert kafka_image() == f"apache/kafka:{version}"


def test_the_container_is_one_kraft_node_that_advertises_the_mapped_port() -> None:
    env = ApacheKafkaContainer.environment()
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # as the local broker: topics are made by us
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert set(listeners) == set(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(":PLAINTEXT", "").split(","))
    script = ApacheKafkaContainer.start_script(ApacheKafkaContainer.__new__(ApacheKafkaContainer), "localhost", 32771)
    assert script.startswith("exec /etc/kafka/docker/run ")
    assert "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://localhost:32771," in script
