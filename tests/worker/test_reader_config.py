"""The readers' client configs (unit tier: built from settings, checked by librdkafka itself without a broker).

A bulk reader's fetch waits for a stream's records, so that a fetch brings many of them; the priority lane's
answers at its first record (latency first); 0 gives librdkafka's own behaviour back. The inference reader
keeps a slow model's second of events fetched ahead and stops fetching there (its broker test:
tests/kafka/test_fetch_ahead.py)."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from pipeline.config import Settings
from pipeline.worker.readers import FETCH_MIN_BYTES, LANE, QUEUE_BACKOFF_MS, fetch_ahead, reader_config

BULK = ("input", "inference")


def settings(**overrides: object) -> Settings:
    return Settings(bootstrap_servers="127.0.0.1:1", **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", BULK)
def test_a_bulk_reader_waits_for_a_fuller_fetch(role: str) -> None:
    conf = reader_config(settings(reader_fetch_wait_ms=15), role)
    assert conf["fetch.wait.max.ms"] == 15
    assert conf["fetch.min.bytes"] == FETCH_MIN_BYTES
    assert conf["group.id"].endswith(f".{role}")


def test_the_default_wait_is_ten_milliseconds() -> None:
    assert reader_config(settings(), "input")["fetch.wait.max.ms"] == 10


def test_the_priority_lane_answers_at_its_first_record() -> None:
    conf = reader_config(settings(reader_fetch_wait_ms=15), LANE)
    assert "fetch.wait.max.ms" not in conf
    assert "fetch.min.bytes" not in conf


@pytest.mark.parametrize("role", (*BULK, LANE))
def test_zero_keeps_librdkafkas_fetch(role: str) -> None:
    conf = reader_config(settings(reader_fetch_wait_ms=0), role)
    assert "fetch.wait.max.ms" not in conf
    assert "fetch.min.bytes" not in conf


def test_a_wait_past_librdkafkas_idle_fetch_is_refused() -> None:
    with pytest.raises(ValueError, match="reader_fetch_wait_ms"):
        settings(reader_fetch_wait_ms=501)


def test_the_fetch_ahead_is_what_the_model_runs_in_its_budget() -> None:
    assert fetch_ahead(settings(), 250.0) == 250  # a second, by default
    assert fetch_ahead(settings(inference_fetch_ahead_ms=2000), 250.5) == 501


def test_the_fetch_ahead_holds_at_least_four_model_batches() -> None:
    assert fetch_ahead(settings(batch_size=32), 10.0) == 128


def test_a_fast_models_fetch_ahead_is_librdkafkas_own() -> None:
    assert fetch_ahead(settings(), 99_999.0) == 99_999
    assert fetch_ahead(settings(), 100_000.0) is None


def test_zero_turns_the_fetch_ahead_off() -> None:
    assert fetch_ahead(settings(inference_fetch_ahead_ms=0), 250.0) is None


@pytest.mark.parametrize("pace", (0.0, -1.0, float("nan"), float("inf")))
def test_a_pace_that_says_nothing_leaves_librdkafkas_own(pace: float) -> None:
    assert fetch_ahead(settings(), pace) is None


def test_a_fetch_ahead_sets_librdkafkas_count_and_a_short_backoff() -> None:
    conf = reader_config(settings(), "inference", 300)
    assert conf["queued.min.messages"] == 300
    assert conf["fetch.queue.backoff.ms"] == QUEUE_BACKOFF_MS
    plain = reader_config(settings(), "inference")
    assert "queued.min.messages" not in plain
    assert "fetch.queue.backoff.ms" not in plain


@pytest.mark.parametrize("role", (*BULK, LANE))
def test_librdkafka_accepts_each_readers_config(role: str) -> None:
    """librdkafka checks every property's name and range when the client is made (no broker is reached
    before the first call that needs one)."""
    conf = reader_config(settings(worker_id="w1", reader_fetch_wait_ms=500), role, 128 if role == "inference" else None)
    assert conf["group.instance.id"] == f"w1.{role}"
    Consumer(conf).close()
