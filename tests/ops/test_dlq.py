"""`pipeline dlq`: policy on synthetic dead letters, and a real redrive after the cause is fixed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.ops.collect import count, read_topic
from pipeline.ops.dlq import DeadLetter, Filter, redrive, redriven_headers, summarise
from pipeline.serde import build_request
from pipeline.serde.deadletter import PREFIX, REDRIVE_COUNT
from tests.harness import WorkerProcess, produce_requests
from tests.ops.conftest import Cli


def _dl(code: str = "HOOK_FAILED", redriven: int | None = None, topic: str | None = "in") -> DeadLetter:
    headers = [("traceparent", b"00-a-b-01"), (PREFIX + "stage", b"HOOK"), (PREFIX + "error_code", code.encode())]
    headers.append((PREFIX + "exception.class", b"RuntimeError"))
    if topic:
        headers.append((PREFIX + "topic", topic.encode()))
    if redriven is not None:
        headers.append((REDRIVE_COUNT, str(redriven).encode()))
    return DeadLetter(0, 0, 0, b"k", b"v", headers)


def test_redriven_headers_strip_context_and_count_up() -> None:
    assert redriven_headers(_dl()) == [("traceparent", b"00-a-b-01"), (REDRIVE_COUNT, b"1")]
    assert redriven_headers(_dl(redriven=2))[-1] == (REDRIVE_COUNT, b"3")


def test_redrive_policy_refuses_filters_and_counts_without_sending(ops_settings: Settings) -> None:
    letters = [_dl(), _dl(redriven=3), _dl(code="OTHER"), _dl(topic=None), _dl(redriven=2)]
    report = redrive(ops_settings, letters, Filter(frozenset({"HOOK_FAILED"})), 3, dry_run=True)
    assert (report.sent, report.refused, report.filtered, report.no_topic) == (2, 1, 1, 1)
    assert summarise(letters)[("HOOK", "RuntimeError", "HOOK_FAILED")] == 4


@pytest.fixture
def failed_hook_letters(ops_settings: Settings) -> Iterator[list[str]]:
    settings = ops_settings
    reqs = [
        build_request(model="tiny", tensors={"x": np.ones(8, np.float32)}, attributes={"fail_hook": "1"})
        for _ in range(12)
    ]
    hook = {"PIPELINE_HOOKS_PRE": '["tests.e2e.hooks:fail_when_asked"]'}
    with WorkerProcess(settings, "--model", "tiny", "--worker-id", "dlq-a", **hook) as worker:
        worker.wait_assigned()
        ids = produce_requests(settings, reqs)
        dead = read_topic(settings, settings.topics.dead_letter, expected=len(ids), timeout_s=90)
        assert len(dead) == len(ids), worker.output()[-3000:]
    yield ids


def test_redrive_after_the_cause_is_fixed_brings_events_to_the_output_topic(
    ops_settings: Settings, cli: Cli, failed_hook_letters: list[str]
) -> None:
    settings = ops_settings
    ids = failed_hook_letters
    listed = cli("dlq", "list")
    assert listed.exit_code == 0, listed.output
    assert re.search(r"HOOK\s.*RuntimeError\s.*\s12\b", listed.output), listed.output

    shown = cli("dlq", "show", "--max", "2")
    rows = [json.loads(line) for line in shown.output.splitlines()]
    assert len(rows) == 2 and rows[0]["value_b64"]
    assert any(h["key"] == PREFIX + "topic" and h["value"] == settings.topics.inference for h in rows[0]["headers"])

    before = count(settings, settings.topics.inference)
    dry = cli("dlq", "redrive", "--dry-run")
    assert dry.exit_code == 0 and "would send 12" in dry.output, dry.output
    assert count(settings, settings.topics.inference) == before  # nothing written on --dry-run

    with WorkerProcess(settings, "--model", "tiny", "--worker-id", "dlq-b") as worker:
        worker.wait_assigned()
        done = cli("dlq", "redrive")
        assert done.exit_code == 0 and "sent 12" in done.output, done.output
        out = read_topic(settings, settings.topics.output, expected=len(ids), timeout_s=90)
    assert len(out) == len(ids), worker.output()[-3000:]
    redriven = read_topic(settings, settings.topics.inference, idle_s=1.0)
    assert sorted(dict(r.headers).get(REDRIVE_COUNT, b"") for r in redriven) == [b""] * 12 + [b"1"] * 12
    assert not any(k.startswith(PREFIX) for r in redriven for k, _ in r.headers)


def test_dlq_on_a_missing_topic_is_one_clear_line(cli: Cli) -> None:
    res = cli("dlq", "list", "--topic", "no.such.topic.here")
    assert res.exit_code == 1
    assert "does not exist" in res.output and "Traceback" not in res.output


def test_broker_down_is_one_clear_line(cli: Cli) -> None:
    cli.env = {**cli.env, "KAFKA_BOOTSTRAP": "127.0.0.1:1", "PIPELINE_ADMIN_TIMEOUT_S": "1"}
    res = cli("dlq", "list")
    assert res.exit_code == 1 and "cannot reach Kafka" in res.output and "Traceback" not in res.output
