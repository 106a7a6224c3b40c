"""The supervisor's merged /metrics and /readyz, against real registries served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.observability.aggregate import ProcessEndpoints, merge_expositions, merge_readiness
from pipeline.observability.http import HealthServer


def _registry(role: str, consumed: int, ready: int, model: bool) -> CollectorRegistry:
    reg = CollectorRegistry()
    counter = Counter("pipeline_events_consumed_total", "Records read.", ["role"], registry=reg)
    counter.labels(role).inc(consumed)
    produced = Counter("pipeline_events_produced_total", "Records written.", ["topic"], registry=reg)
    produced.labels("errors").inc(2)  # both processes write to the error topic
    hist = Histogram("pipeline_batch_size", "Events per batch.", ["role"], buckets=(8, 64), registry=reg)
    hist.labels("any").observe(consumed)
    Gauge("pipeline_ready", "Ready.", registry=reg).set(ready)
    if model:
        Info("pipeline_model", "Model.", registry=reg).info({"model": "tiny", "provider": "CPUExecutionProvider"})
    return reg


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_and_histograms_add_up_and_gauges_take_the_lowest() -> None:
    one = generate_latest(_registry("input", 10, ready=1, model=False)).decode()
    two = generate_latest(_registry("inference", 40, ready=0, model=True)).decode()
    merged = merge_expositions([one, two])
    samples = _samples(merged)
    assert samples[("pipeline_events_consumed_total", (("role", "input"),))] == 10
    assert samples[("pipeline_events_consumed_total", (("role", "inference"),))] == 40
    assert samples[("pipeline_events_produced_total", (("topic", "errors"),))] == 4
    assert samples[("pipeline_batch_size_count", (("role", "any"),))] == 2
    assert samples[("pipeline_batch_size_sum", (("role", "any"),))] == 50
    assert samples[("pipeline_batch_size_bucket", (("le", "8.0"), ("role", "any")))] == 0
    assert samples[("pipeline_batch_size_bucket", (("le", "64.0"), ("role", "any")))] == 2
    assert samples[("pipeline_ready", ())] == 0  # not ready while one process is not
    assert samples[("pipeline_model_info", (("model", "tiny"), ("provider", "CPUExecutionProvider")))] == 1
    created = [v for (name, _), v in samples.items() if name == "pipeline_events_produced_created"]
    assert len(created) == 1 and created[0] > 0  # a creation time, not a sum of two
    # one family per name in the output, as Prometheus requires
    types = [line for line in merged.decode().splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))


def test_no_process_answering_gives_an_empty_exposition() -> None:
    assert merge_expositions([]) == b""


def test_a_check_holds_only_when_every_process_holds_it() -> None:
    ready = {"connected": True, "partitions_assigned": True, "model_warm": True}
    assigning = {"connected": True, "partitions_assigned": False, "model_warm": True}
    assert merge_readiness([ready, ready]) == ready
    assert merge_readiness([ready, assigning]) == assigning
    assert merge_readiness([ready, None]) == dict.fromkeys(ready, False)  # silent: not ready


@pytest.fixture
def two_processes() -> Iterator[tuple[HealthServer, HealthServer]]:
    regs = [_registry("input", 3, 1, False), _registry("inference", 5, 1, True)]
    checks = [
        {"connected": True, "partitions_assigned": True, "model_warm": True},
        {"connected": True, "partitions_assigned": False, "model_warm": False},
    ]
    servers = [
        HealthServer(0, lambda c=c: c, host="127.0.0.1", metrics=lambda r=r: generate_latest(r)).start()
        for r, c in zip(regs, checks, strict=True)
    ]
    yield servers[0], servers[1]
    for server in servers:
        server.stop()


def test_endpoints_fetch_every_process_that_reported_its_port(two_processes: tuple[HealthServer, ...]) -> None:
    first, second = two_processes
    endpoints = ProcessEndpoints(["input", "inference"])
    assert endpoints.readiness() == dict.fromkeys(("connected", "partitions_assigned", "model_warm"), False)
    endpoints.ports["input"] = first.port
    assert _samples(endpoints.metrics())[("pipeline_events_consumed_total", (("role", "input"),))] == 3
    endpoints.ports["inference"] = second.port
    samples = _samples(endpoints.metrics())
    assert samples[("pipeline_events_consumed_total", (("role", "inference"),))] == 5
    assert samples[("pipeline_events_produced_total", (("topic", "errors"),))] == 4
    # the second process answers 503 with its checks: they count, not the status alone
    assert endpoints.readiness() == {"connected": True, "partitions_assigned": False, "model_warm": False}


def test_a_process_that_stopped_answering_is_left_out_of_metrics_and_not_ready(
    two_processes: tuple[HealthServer, ...],
) -> None:
    first, second = two_processes
    endpoints = ProcessEndpoints(["input", "inference"])
    endpoints.ports.update(input=first.port, inference=second.port)
    second.stop()
    samples = _samples(endpoints.metrics())
    assert ("pipeline_events_consumed_total", (("role", "inference"),)) not in samples
    assert samples[("pipeline_events_consumed_total", (("role", "input"),))] == 3
    assert endpoints.readiness()["connected"] is False
