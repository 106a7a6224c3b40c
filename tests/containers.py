"""The suite's broker where a Docker engine runs: Apache Kafka's own image, at the version the local broker
(``infra/kafka/kafka-local``) fetches from Maven Central, so a test sees the same broker either way.

testcontainers' ``KafkaContainer`` targets Confluent's images (it starts them through
``/etc/confluent/docker/*`` and refuses KRaft below Confluent's 7.0 tag), so it cannot run ``apache/kafka``.
This class starts that image the way its own ``/etc/kafka/docker/run`` expects: ``KAFKA_*`` variables for
a single combined KRaft node, and the advertised listener passed once the host's mapped port is known.
"""

from __future__ import annotations

import re
import tarfile
import time
from io import BytesIO
from pathlib import Path

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

REPO = Path(__file__).resolve().parent.parent
POM = REPO / "infra" / "kafka" / "pom.xml"
START_SCRIPT = "/tc-start.sh"


def kafka_version() -> str:
    """The Kafka version of the local broker (``kafka.version`` in ``infra/kafka/pom.xml``)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text(encoding="utf-8"))
    if found is None:
        raise RuntimeError(f"no <kafka.version> in {POM}")
    return found.group(1).strip()


def kafka_image() -> str:
    return f"apache/kafka:{kafka_version()}"


class ApacheKafkaContainer(DockerContainer):
    """One KRaft node (broker and controller) of ``apache/kafka``, configured like the local broker."""

    PORT = 9092  # clients, advertised as the host's mapped port
    BROKER_PORT = 9093  # between brokers, inside Docker's network
    CONTROLLER_PORT = 9094

    def __init__(self, image: str | None = None, startup_timeout_s: int = 120) -> None:
        super().__init__(image or kafka_image())
        self.startup_timeout_s = startup_timeout_s
        self.with_exposed_ports(self.PORT)
        self.with_envs(**self.environment())
        # The image runs /etc/kafka/docker/run; it waits here for the script that passes the listener.
        self.with_command(f'sh -c "while [ ! -f {START_SCRIPT} ]; do sleep 0.1; done; exec sh {START_SCRIPT}"')

    @classmethod
    def environment(cls) -> dict[str, str]:
        return {
            "CLUSTER_ID": "pipeline-tests-kraft-1",
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": (
                f"PLAINTEXT://0.0.0.0:{cls.PORT},BROKER://0.0.0.0:{cls.BROKER_PORT},"
                f"CONTROLLER://0.0.0.0:{cls.CONTROLLER_PORT}"
            ),
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@localhost:{cls.CONTROLLER_PORT}",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        }

    def start_script(self, host: str, port: int) -> str:
        advertised = f"PLAINTEXT://{host}:{port},BROKER://$(hostname -i | cut -d' ' -f1):{self.BROKER_PORT}"
        return f'exec /etc/kafka/docker/run "KAFKA_ADVERTISED_LISTENERS={advertised}"\n'

    def start(self) -> ApacheKafkaContainer:  # type: ignore[override]
        super().start()
        host, port = self.get_container_host_ip(), self.get_exposed_port(self.PORT)
        self._put_file(START_SCRIPT, self.start_script(host, port).encode())
        wait = LogMessageWaitStrategy(re.compile(r"Kafka Server started"))
        wait.with_startup_timeout(self.startup_timeout_s)
        wait.wait_until_ready(self)
        return self

    def get_bootstrap_server(self) -> str:
        return f"{self.get_container_host_ip()}:{self.get_exposed_port(self.PORT)}"

    def _put_file(self, path: str, content: bytes) -> None:
        with BytesIO() as archive, tarfile.TarFile(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(name=path)
            info.size = len(content)
            info.mtime = int(time.time())
            tar.addfile(info, BytesIO(content))
            archive.seek(0)
            self.get_wrapped_container().put_archive("/", archive)
