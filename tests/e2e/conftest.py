from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from tests.harness import REPO, create_pipeline_topics

KAFKA_LOCAL = REPO / "infra" / "kafka" / "kafka-local"


@pytest.fixture
def e2e_settings(pipeline_settings: Settings) -> Settings:
    settings = pipeline_settings.model_copy(update={"partitions": 4})
    create_pipeline_topics(settings)
    return settings


def kafka_local(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(KAFKA_LOCAL), *args], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, f"kafka-local {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _own(tmp_path: Path, nodes: int) -> Iterator[tuple[str, dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_PORT"}
    env.update(KAFKA_LOCAL_STATE=str(tmp_path / "broker"), KAFKA_LOCAL_PYTHON=sys.executable)
    bootstrap = kafka_local(env, "start", "--nodes", str(nodes))
    try:
        yield bootstrap, env
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], capture_output=True, env=env, timeout=120)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A broker of this test's own (it will be stopped and started again)."""
    yield from _own(tmp_path, 1)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Three brokers of this test's own (one of them will be killed)."""
    yield from _own(tmp_path, 3)
