"""An exception nobody expected fails the events that raise it, alone; a cause outside the events does not."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.config import Settings
from pipeline.errors import ExternalCause
from pipeline.kafka.batching import Batch
from pipeline.kafka.records import OutRecord
from pipeline.observability.metrics import Metrics
from pipeline.serde import Codecs
from pipeline.serde.deadletter import read_context
from pipeline.stages.isolation import Isolated
from tests.stages.conftest import Consumed, batch_of, by_topic, router


class Echo:
    """Forwards every record; raises (a bug) when a batch holds a record whose value is b"boom"."""

    role = "echo"

    def __init__(self, external: bool = False) -> None:
        self.seen = 0
        self.external = external

    async def process(self, batch: Batch) -> list[OutRecord]:
        self.seen += 1
        if self.external:
            raise ExternalCause("the registry is away")
        if any(m.value() == b"boom" for m in batch.messages):
            raise KeyError("a bug that only this record triggers")
        return [OutRecord("out", m.value(), m.key(), source=m) for m in batch.messages]


def test_an_unexpected_exception_is_narrowed_down_to_its_event(settings: Settings, codecs: Codecs) -> None:
    metrics = Metrics()
    stage = Isolated(Echo(), router(settings, codecs, metrics), metrics)
    values = [b"a", b"b", b"c", b"boom", b"d", b"e", b"f"]
    out = by_topic(asyncio.run(stage.process(batch_of([Consumed(v) for v in values]))))
    assert [r.value for r in out["out"]] == [b"a", b"b", b"c", b"d", b"e", b"f"]  # every neighbour once
    (error,) = [codecs.error.decode(r.value) for r in out[settings.topics.error]]
    assert (error["stage"], error["error_code"], error["source_offset"]) == ("UNKNOWN", "UNKNOWN", 3)
    (letter,) = out[settings.topics.dead_letter]
    assert letter.value == b"boom" and read_context(letter.headers)["exception.class"] == "KeyError"


def test_a_cause_outside_the_events_is_not_split(settings: Settings, codecs: Codecs) -> None:
    metrics = Metrics()
    echo = Echo(external=True)
    stage = Isolated(echo, router(settings, codecs, metrics), metrics)
    with pytest.raises(ExternalCause):
        asyncio.run(stage.process(batch_of([Consumed(b"a"), Consumed(b"b")])))
    assert echo.seen == 1
