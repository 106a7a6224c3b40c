"""Metrics, health, lag, logs and trace context, seen from outside a real worker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings
from pipeline.kafka.lag import group_lag
from pipeline.ops.collect import read_topic
from pipeline.ops.generate import tiny_requests
from pipeline.serde import Codecs, build_request
from tests.harness import (
    REPO,
    WorkerProcess,
    env_for,
    free_port,
    http_get,
    poll_http,
    produce_raw,
    produce_requests,
)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == val for k, val in labels.items())
    )


@pytest.mark.parametrize("layout", ["on", "off"])  # one process per role (merged on scrape), or one process
def test_metrics_count_what_flowed_and_readiness_follows_warm_up(e2e_settings: Settings, layout: str) -> None:
    settings = e2e_settings
    port = free_port()
    good = list(tiny_requests(200, seed=4))
    codec = Codecs.from_settings(settings).request
    bad = [(b"k", b"\x00garbage", None), (b"k", b"", None)]
    unknown = build_request(model="nope", tensors={"x": np.ones(8, np.float32)})
    trace = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    records = [(r["event_id"].encode(), codec.encode(r), [trace]) for r in good]
    records += [*bad, (None, codec.encode(unknown), [trace])]
    with WorkerProcess(settings, "--model", "tiny", "--metrics-port", str(port), "--process-per-role", layout):
        status, body, seen = poll_http(port, "/readyz", until=200, timeout_s=90, interval_s=0.05)
        assert status == 200, body
        checks = {"connected": True, "partitions_assigned": True, "model_warm": True, "flowing": True, "fetching": True}
        assert body == {"ready": True, "checks": checks}
        assert http_get(port, "/healthz")[0] == 200
        produce_raw(settings, settings.topics.input, records)
        out = read_topic(settings, settings.topics.output, expected=len(good), timeout_s=60)
        errors = read_topic(settings, settings.topics.error, expected=3, timeout_s=30)
        dead = read_topic(settings, settings.topics.dead_letter, expected=3, timeout_s=30)
        time.sleep(1.5)  # delivery reports of the last writes
        samples = _samples(http_get(port, "/metrics")[1])
    # readiness is only reached after the worker had loaded and warmed up its model
    assert 503 in seen
    assert len(out) == len(good) and len(errors) == 3 and len(dead) == 3
    assert _sum(samples, "pipeline_events_consumed_total", role="input", topic=settings.topics.input) == len(records)
    assert _sum(samples, "pipeline_events_consumed_total", role="inference") == len(good)
    assert _sum(samples, "pipeline_results_total", model="tiny") == len(good)
    assert _sum(samples, "pipeline_events_produced_total", topic=settings.topics.output) == len(good)
    assert _sum(samples, "pipeline_events_produced_total", topic=settings.topics.error) == 3
    assert _sum(samples, "pipeline_events_produced_total", topic=settings.topics.dead_letter) == 3
    assert _sum(samples, "pipeline_events_failed_total") == 3
    assert _sum(samples, "pipeline_events_failed_total", stage="DECODE") == 2
    assert _sum(samples, "pipeline_events_failed_total", stage="VALIDATE", error_code="UNKNOWN_MODEL") == 1
    assert _sum(samples, "pipeline_events_dead_lettered_total") == 3
    assert _sum(samples, "pipeline_batch_size_count", role="inference") >= 1
    assert _sum(samples, "pipeline_model_inference_seconds_count", model="tiny") >= 1
    info = [dict(labels) for (name, labels), v in samples.items() if name == "pipeline_model_info" and v == 1]
    assert [i["model"] for i in info] == ["tiny"]
    assert info[0]["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
    assert not any("event_id" in dict(labels) for _, labels in samples)  # no per-event labels

    # the W3C trace context continues on every record made from an input record
    assert all(trace in r.headers for r in out)
    assert sum(1 for r in errors if trace in r.headers) == 1
    assert sum(1 for r in dead if trace in r.headers) == 1


def test_lag_rises_while_the_worker_is_down_and_returns_to_zero(e2e_settings: Settings) -> None:
    settings = e2e_settings
    group = f"{settings.group}.input"
    with WorkerProcess(settings, "--model", "tiny", "--worker-id", "lag") as worker:
        worker.wait_assigned("input")
        produce_requests(settings, tiny_requests(100, seed=1))
        read_topic(settings, settings.topics.output, expected=100, timeout_s=60)
    assert sum(group_lag(settings, group, [settings.topics.input]).values()) == 0
    produce_requests(settings, tiny_requests(500, seed=2))  # nobody is consuming
    assert sum(group_lag(settings, group, [settings.topics.input]).values()) == 500
    port = free_port()
    with WorkerProcess(settings, "--model", "tiny", "--worker-id", "lag", "--metrics-port", str(port)):
        read_topic(settings, settings.topics.output, expected=600, timeout_s=60)
        deadline = time.monotonic() + 30
        gauge = -1.0
        while time.monotonic() < deadline:
            gauge = _sum(_samples(http_get(port, "/metrics")[1]), "pipeline_consumer_lag", group=group)
            if gauge == 0 and sum(group_lag(settings, group, [settings.topics.input]).values()) == 0:
                break
            time.sleep(0.5)
        assert gauge == 0


def test_a_configured_sasl_password_never_shows_in_logs(e2e_settings: Settings) -> None:
    secret = "s3cr3t-Hunter2-pw"
    env = env_for(
        e2e_settings,
        PIPELINE_SECURITY__SECURITY_PROTOCOL="SASL_PLAINTEXT",
        PIPELINE_SECURITY__SASL_MECHANISM="SCRAM-SHA-512",
        PIPELINE_SECURITY__SASL_USERNAME="svc",
        PIPELINE_SECURITY__SASL_PASSWORD=secret,
        PIPELINE_ADMIN_TIMEOUT_S="3",
        PIPELINE_LOG_LEVEL="debug",
        PIPELINE_LOG_FORMAT="json",
    )
    outputs = []
    for args in (["topics", "describe"], ["worker", "--model", "tiny"]):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli.main", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0  # the plaintext broker refuses a SASL client
        outputs.append(result.stdout + result.stderr)
    joined = "\n".join(outputs)
    assert "cannot reach Kafka" in joined or "authentication as user 'svc' failed" in joined
    assert secret not in joined
    assert os.environ.get("PIPELINE_SECURITY__SASL_PASSWORD") is None


def test_json_logs_carry_event_context(e2e_settings: Settings) -> None:
    settings = e2e_settings
    with WorkerProcess(settings, "--model", "tiny", PIPELINE_LOG_FORMAT="json") as worker:
        worker.wait_assigned()
        produce_raw(settings, settings.topics.input, [(b"key", b"not avro", None)])
        read_topic(settings, settings.topics.dead_letter, expected=1, timeout_s=30)
        time.sleep(0.5)
    entries = []
    for line in worker.lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    routed = [e for e in entries if e.get("message") == "event routed to error and dead-letter"]
    assert routed, worker.output()[-2000:]
    entry = routed[0]
    assert entry["topic"] == settings.topics.input and entry["offset"] == 0 and "partition" in entry
    assert entry["error_code"] == "BAD_MAGIC" and entry["level"] == "info"
