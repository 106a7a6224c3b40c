"""`pipeline replay` on the real broker: ranges, filters, headers, dry runs, bad input, and a 50,000-record
replay killed with SIGKILL mid-way and resumed, which must copy the range exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import numpy as np
import pytest
from confluent_kafka.admin import NewTopic

from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.ops.collect import Record, read_topic
from pipeline.ops.replay_plan import H_ID, H_OFFSET, H_PARTITION, H_TOPIC, group_for
from pipeline.serde import Codecs, build_request
from tests.conftest import committed_total
from tests.harness import REPO, env_for, produce_raw
from tests.ops.conftest import Cli


def _topics(settings: Settings, *partitions: int) -> list[str]:
    names = [f"replay.{uuid.uuid4().hex[:10]}" for _ in partitions]
    admin = connect_admin(settings)  # held until the futures resolve: a destroyed handle fails them
    futures = admin.create_topics([NewTopic(n, p, 1) for n, p in zip(names, partitions, strict=True)])
    for f in futures.values():
        f.result(timeout=15)
    return names


def _source_position(r: Record) -> tuple[int, int]:
    h = dict(r.headers)
    return int(h[H_PARTITION]), int(h[H_OFFSET])


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return Settings(bootstrap_servers=kafka_bootstrap, partitions=2)


def test_replay_copies_a_filtered_offset_range_with_keys_headers_and_partitions(settings: Settings) -> None:
    source, target = _topics(settings, 2, 2)
    codec = Codecs.from_settings(settings).request
    records = []
    for i in range(120):
        req = build_request(model="tiny" if i % 3 else "other", tensors={"x": np.full(8, i, np.float32)})
        records.append((f"k{i % 7}".encode(), codec.encode(req), [("trace", f"t{i}".encode())]))
    produce_raw(settings, source, records)
    by_position = {(r.partition, r.offset): r for r in read_topic(settings, source, expected=120)}
    cli = Cli(settings)
    args = ["replay", "--source", source, "--target", target, "--from", "0:5,1:5", "--to", "0:40,1:40"]
    expected = {
        pos for pos, r in by_position.items() if 5 <= pos[1] < 40 and codec.decode(r.value)["model"]["name"] == "tiny"
    }

    dry = cli(*args, "--filter", "model=tiny", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would copy {len(expected)}," in dry.output, dry.output
    assert read_topic(settings, target, idle_s=0.5) == []  # nothing written on --dry-run

    done = cli(*args, "--filter", "model=tiny")
    assert done.exit_code == 0, done.output
    copied = read_topic(settings, target, expected=len(expected), idle_s=1.0)
    assert {_source_position(r) for r in copied} == expected and len(copied) == len(expected)
    for r in copied:
        original = by_position[_source_position(r)]
        h = dict(r.headers)
        assert (r.key, r.value, r.partition) == (original.key, original.value, original.partition)
        assert h["trace"] == dict(original.headers)["trace"] and h[H_TOPIC] == source.encode() and h[H_ID]
        assert r.timestamp == original.timestamp

    again = cli(*args, "--filter", "model=tiny")
    assert again.exit_code == 0 and "already complete" in again.output, again.output
    assert len(read_topic(settings, target, idle_s=0.5)) == len(expected)


def test_replay_refuses_bad_input_with_one_line(settings: Settings) -> None:
    source, target = _topics(settings, 1, 1)
    produce_raw(settings, source, [(None, b"x", None)] * 3)
    cli = Cli(settings)
    cases = {
        ("--source", "no.such.topic", "--target", target): "does not exist",
        ("--source", source, "--target", "no.such.topic"): "does not exist",
        ("--source", source, "--target", target, "--from", "yesterday-ish"): "cannot read time",
        ("--source", source, "--target", target, "--from", "2999-01-01T00:00:00Z"): "no records in the range",
        ("--source", source, "--target", target, "--filter", "colour=red"): "unknown filter field",
        ("--source", source, "--target", source): "same topic",
    }
    for args, needle in cases.items():
        res = cli("replay", *args)
        assert res.exit_code == 1, (args, res.output)
        assert needle in res.output and "Traceback" not in res.output, (args, res.output)
    assert len(read_topic(settings, target, idle_s=0.3)) == 0


def _committed(settings: Settings, group: str, topic: str, partitions: int) -> int:
    return committed_total(settings, group, topic, partitions)


def test_a_replay_killed_mid_way_and_resumed_copies_the_range_exactly_once(settings: Settings) -> None:
    n = 50_000
    source, target = _topics(settings, 2, 2)
    produce_raw(settings, source, ((f"k{i}".encode(), b"v%d" % i, [("i", str(i).encode())]) for i in range(n)))
    rid = f"kill-{uuid.uuid4().hex[:8]}"
    args = ["replay", "--source", source, "--target", target, "--replay-id", rid]
    env = {**env_for(settings), "PIPELINE_LOG_LEVEL": "error"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", *args, "--rate", "10000", "--transaction-size", "1000"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if _committed(settings, group_for(settings.group, rid), source, 2) >= 8000:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the replay finished before it could be killed:\n{proc.communicate()[0]}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    at_kill = _committed(settings, group_for(settings.group, rid), source, 2)
    assert 0 < at_kill < n, at_kill

    # the source keeps being written: the resumed run must still stop at the range first planned
    produce_raw(settings, source, ((b"late", b"late", None) for _ in range(500)))
    resumed = Cli(settings)(*args)
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming, {at_kill} of {n} already copied" in resumed.output, resumed.output

    copied = read_topic(settings, target, expected=n, idle_s=2.0, timeout_s=120)  # read_committed
    positions = Counter(_source_position(r) for r in copied)
    duplicates = [pos for pos, c in positions.items() if c > 1]
    assert not duplicates, f"{len(duplicates)} records copied twice, e.g. {duplicates[:3]}"
    assert len(copied) == n, f"{len(copied)} copied, expected {n}"
    assert {r.value for r in copied} == {b"v%d" % i for i in range(n)}
    assert len(read_topic(settings, target, idle_s=1.0)) == n  # nothing more arrives afterwards


def test_replay_and_produce_fail_fast_with_one_line_when_the_broker_is_down(settings: Settings) -> None:
    cli = Cli(settings)
    cli.env.update({"KAFKA_BOOTSTRAP": "127.0.0.1:1", "PIPELINE_ADMIN_TIMEOUT_S": "2"})
    for args in (["replay", "--source", "a", "--target", "b"], ["produce", "--topic", "a"]):
        began = time.monotonic()
        res = cli(*args, input="")
        assert res.exit_code == 1, res.output
        assert "cannot reach Kafka at 127.0.0.1:1" in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
        assert time.monotonic() - began < 10


def test_replay_by_time_copies_what_was_written_in_that_window(settings: Settings) -> None:
    from datetime import UTC, datetime

    from confluent_kafka import Producer

    from pipeline.kafka.clients import producer_config

    source, target = _topics(settings, 2, 2)
    base = (int(time.time()) - 3600) * 1000  # an hour ago, one record a second
    producer = Producer(producer_config(settings))
    for i in range(40):
        producer.produce(source, value=b"%d" % i, key=b"k%d" % (i % 5), timestamp=base + i * 1000)
    assert producer.flush(30) == 0

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")

    cli = Cli(settings)
    res = cli(
        "replay", "--source", source, "--target", target, "--from", iso(base + 10_000), "--to", iso(base + 25_000)
    )
    assert res.exit_code == 0, res.output
    copied = read_topic(settings, target, expected=15, idle_s=0.5)
    assert sorted(int(r.value or b"") for r in copied) == list(range(10, 25))
    relative = cli("replay", "--source", source, "--target", target, "--from", "-2h", "--to", "-59m", "--dry-run")
    assert relative.exit_code == 0 and "would copy 40," in relative.output, relative.output
