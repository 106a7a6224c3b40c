"""`pipeline leave`: a stopped worker with an id hands its partitions over now, not after its session."""

from __future__ import annotations

import time

from confluent_kafka import Consumer

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config
from tests.ops.conftest import Cli


def _static(settings: Settings, worker: str) -> Consumer:
    """A member of the input role's group as a worker with this id joins it."""
    config = consumer_config(
        settings,
        f"{settings.group}.input",
        **{"group.instance.id": f"{worker}.input", "session.timeout.ms": 30_000, "heartbeat.interval.ms": 250},
    )
    consumer = Consumer({k: v for k, v in config.items() if k != "logger"})
    consumer.subscribe([settings.topics.input])
    return consumer


def _assigned(consumer: Consumer, want: int, timeout_s: float = 30) -> float:
    """Seconds until ``consumer`` holds ``want`` partitions."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        consumer.poll(0.05)
        if len(consumer.assignment()) == want:
            return time.monotonic() - started
    raise AssertionError(f"{len(consumer.assignment())} partitions, not {want}, after {timeout_s} s")


def test_leave_hands_a_stopped_static_members_partitions_over_at_once(ops_settings: Settings, cli: Cli) -> None:
    settings = ops_settings
    staying, going = _static(settings, "stays"), _static(settings, "goes")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (staying.assignment() and going.assignment()):
            staying.poll(0.05)
            going.poll(0.05)
        assert staying.assignment() and going.assignment()
        going.close()  # a static member sends no leave: its partitions stay reserved for its session (30 s)
        result = cli("leave", "--worker-id", "goes", "--role", "input")
        assert result.exit_code == 0, result.output
        assert f"{settings.group}.input: goes.input: removed" in result.output
        handed_over = _assigned(staying, settings.partitions, timeout_s=10)
        print(f"partitions handed over {handed_over:.2f} s after `pipeline leave`")
        again = cli("leave", "--worker-id", "goes", "--role", "input")
        assert again.exit_code == 0 and "not a member" in again.output, again.output
    finally:
        staying.close()
