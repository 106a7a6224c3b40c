"""`pipeline offsets reset` against a real group: refuses while it has members, moves offsets otherwise."""

from __future__ import annotations

import time

from confluent_kafka import Consumer

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config
from pipeline.ops.offsets import ResetTo, target_offsets
from tests.conftest import committed_total, unique_name
from tests.harness import produce_raw
from tests.ops.conftest import Cli


def test_target_offsets_policy() -> None:
    marks = {0: (5, 10), 1: (0, 3)}
    assert target_offsets(ResetTo.EARLIEST, marks) == {0: 5, 1: 0}
    assert target_offsets(ResetTo.LATEST, marks) == {0: 10, 1: 3}
    assert target_offsets(ResetTo.DATETIME, marks, {0: 7, 1: -1}) == {0: 7, 1: 3}


def test_reset_refuses_a_live_group_then_moves_a_stopped_one(ops_settings: Settings, cli: Cli) -> None:
    settings = ops_settings
    topic = settings.topics.input
    produce_raw(settings, topic, ((str(i).encode(), b"old", None) for i in range(20)))
    time.sleep(1.2)
    middle = time.time()
    time.sleep(1.2)
    produce_raw(settings, topic, ((str(i).encode(), b"new", None) for i in range(10)))
    group = unique_name("g")
    consumer = Consumer(
        consumer_config(settings, group, **{"session.timeout.ms": 6000, "enable.auto.offset.store": True})
    )
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 30 and time.monotonic() < deadline:
        seen += len([m for m in consumer.consume(100, timeout=0.5) if m.error() is None])
    consumer.commit(asynchronous=False)
    live = cli("offsets", "reset", "--group", group, "--topic", topic, "--to-earliest")
    assert live.exit_code == 1 and "active member" in live.output, live.output
    consumer.close()

    dry = cli("offsets", "reset", "--group", group, "--topic", topic, "--to-earliest", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert committed_total(settings, group, topic, settings.partitions) == 30

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle)) + f".{int(middle % 1 * 1000):03d}Z"
    moved = cli("offsets", "reset", "--group", group, "--topic", topic, "--to-datetime", stamp)
    assert moved.exit_code == 0, moved.output
    assert committed_total(settings, group, topic, settings.partitions) == 20  # the 10 "new" are re-read

    assert cli("offsets", "reset", "--group", group, "--topic", topic, "--to-earliest").exit_code == 0
    assert committed_total(settings, group, topic, settings.partitions) == 0
    bad = cli("offsets", "reset", "--group", group, "--topic", topic, "--to-datetime", "yesterday-ish")
    assert bad.exit_code == 1 and "cannot read time" in bad.output
