"""The stages' unit tests feed consumed records in and read the records to write out: no broker."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.config import Settings, Topics
from pipeline.kafka.batching import Batch, InRecord
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.records import OutRecord
from pipeline.observability.metrics import Metrics
from pipeline.serde import Codecs
from pipeline.stages.failures import FailureRouter
from pipeline.stages.hooks import HookRegistry


@dataclass
class Consumed:
    """A consumed record, as the stages see one (confluent-kafka's Message cannot be built by hand)."""

    value_: bytes | None
    key_: bytes | None = None
    headers_: list[tuple[str, bytes]] | None = None
    topic_: str = "in"
    partition_: int = 0
    offset_: int = 0
    timestamp_: tuple[int, int] = (1, 1_700_000_000_000)
    extra: dict[str, object] = field(default_factory=dict)

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return self.timestamp_


def batch_of(records: Iterable[Consumed]) -> Batch:
    """A batch with a real ticket (its id names the batch in dead letters)."""
    messages: list[InRecord] = []
    for offset, record in enumerate(records):
        record.offset_ = offset
        messages.append(record)
    ranges = {("in", 0): (0, max(0, len(messages) - 1))}
    return Batch(messages, OffsetTracker().open(ranges))


def by_topic(records: list[OutRecord]) -> dict[str, list[OutRecord]]:
    out: dict[str, list[OutRecord]] = {}
    for r in records:
        out.setdefault(r.topic, []).append(r)
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(topics=Topics(), model_cache=tmp_path / "models", group="unit")


@pytest.fixture
def codecs(settings: Settings) -> Codecs:
    return Codecs.from_settings(settings)


def router(settings: Settings, codecs: Codecs, metrics: Metrics, hooks: HookRegistry | None = None) -> FailureRouter:
    return FailureRouter(
        codecs.error, settings.topics.error, settings.topics.dead_letter, "unit.x", metrics, hooks or HookRegistry()
    )
