"""The bench's report from a made-up result: ratios are the pipeline's events/s over the other's, missing
or failed designs give None rather than a number, and the table names every ratio against its target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.measure import LatencyPoint, median_window
from bench.report import (
    TARGETS,
    cpu_ratios,
    eos_p99_added_ms,
    floor_ratios,
    latency_vs_raw,
    markdown,
    memory_vs_raw,
    plot,
    ratios,
)


def _run(design: str, model: str, eps: float, error: str | None = None, us: float = 100.0) -> dict[str, Any]:
    point = {"offered_per_s": 100.0, "sent_per_s": 100.0, "events": 100, "received": 100}
    point |= {"p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 30.0, "max_ms": 40.0}
    curve = [dict(point, offered_per_s=eps * f) for f in (0.25, 0.5, 0.75, 1.0)] if design == "pipeline" else []
    return {
        "design": design,
        "model": model,
        "events": 1000,
        "events_per_s": eps,
        "span_s": 1.0,
        "first_output_s": 1.0,
        "peak_rss_mb": 300.0,
        "processes": 2 if design in ("pipeline", "raw_two_hop", "quix_n") else 1,
        "cpu_s": us * 1000 / 1e6,
        "events_per_cpu_s": 1e6 / us,
        "cpu_us_per_event": us,
        "latency": point,
        "curve": curve,
        "error": error,
    }


def _result(**runs: float) -> dict[str, Any]:
    result: dict[str, Any] = {
        "batch_size": 32,
        "partitions": 4,
        "machine": {"cpus": 2, "load_before": [0.1, 0.1, 0.1], "load_after": [1.0, 1.0, 1.0]},
        "models": ["tiny", "minilm-l6"],
        "ceilings_events_per_s": {"tiny": 100_000.0, "minilm-l6": 200.0},
        "runs": [_run("pipeline", "minilm-l6", 190.0)]
        + [_run(design, "tiny", eps, None if eps > 0 else "boom") for design, eps in runs.items()],
        "targets": TARGETS,
    }
    result["ratios"] = ratios(result)
    return result


def test_ratios_are_pipeline_over_other() -> None:
    r = _result(pipeline=20_000.0, raw_loop=25_000.0, faust_per_event=4_000.0, quix=10_000.0, pipeline_eos=17_000.0)[
        "ratios"
    ]
    assert r == {
        "minilm_vs_ort": 0.95,
        "tiny_vs_raw_loop": 0.8,
        "tiny_vs_raw_two_hop": None,  # not run
        "tiny_vs_raw_two_hop_interleaved": None,  # no drains between the pipeline's legs
        "tiny_vs_faust_per_event": 5.0,
        "tiny_vs_faust_per_event_n": None,
        "tiny_vs_quix": 2.0,
        "tiny_vs_quix_n": None,
        "tiny_eos_vs_alo": 0.85,  # the other way round: exactly-once's events/s over at-least-once's
    }


def test_exactly_onces_added_p99_is_reported_against_its_target() -> None:
    result = _result(pipeline=20_000.0, raw_loop=25_000.0, faust_per_event=4_000.0, quix=10_000.0, pipeline_eos=1.0)
    eos = next(r for r in result["runs"] if r["design"] == "pipeline_eos")
    eos["latency"] = dict(eos["latency"], p99_ms=130.0)  # at-least-once's is 30 ms
    assert eos_p99_added_ms(result) == 100.0
    assert "+100 ms against at-least-once" in markdown(result) and "120 ms: met" in markdown(result)


def test_a_failed_design_gives_no_ratio_and_shows_as_failed() -> None:
    result = _result(pipeline=20_000.0, raw_loop=25_000.0, faust_per_event=4_000.0, quix=0.0)
    assert result["ratios"]["tiny_vs_quix"] is None
    table = markdown(result)
    assert "| tiny | Quix Streams 3.28 | 1 | failed |" in table
    assert "| tiny_vs_quix | n/a | 1.5 | no | - |" in table
    assert "| tiny_vs_raw_loop | 0.80 | 0.7 | yes | 1.00 |" in table


def test_plot_writes_a_png(tmp_path: Path) -> None:
    result = _result(pipeline=20_000.0, raw_loop=25_000.0, faust_per_event=4_000.0, quix=10_000.0)
    plot(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_design_run_in_legs_shows_each_leg_and_the_median() -> None:
    result = _result(pipeline=20_000.0, raw_loop=25_000.0, faust_per_event=4_000.0, quix=10_000.0)
    result["runs"][0]["legs_events_per_s"] = [181.0, 190.0, 204.0]
    table = markdown(result)
    assert "this pipeline on minilm-l6 181, 190, 204" in table
    assert "| minilm-l6 | this pipeline | 2 | 190 |" in table


def test_the_raw_two_hop_backlogs_between_the_pipelines_legs_give_a_ratio_of_medians() -> None:
    result = _result(pipeline=20_000.0, raw_two_hop=30_000.0)
    pipeline = next(r for r in result["runs"] if r["design"] == "pipeline" and r["model"] == "tiny")
    pipeline["legs_events_per_s"] = [15_000.0, 21_000.0, 20_000.0]
    result["interleaved"] = {
        "tiny": {"design": "raw_two_hop", "events_per_s": [18_000.0, 22_000.0], "cpu_us_per_event": [70.0, 64.5]}
    }
    got = ratios(result)
    assert got["tiny_vs_raw_two_hop"] == 20_000.0 / 30_000.0  # the table's own: one drain each
    assert got["tiny_vs_raw_two_hop_interleaved"] == 1.0  # 20,000 over the median of 18,000 and 22,000
    result["ratios"] = got
    table = markdown(result)
    assert "raw two-hop, plain confluent-kafka + fastavro on tiny, between the pipeline's legs 18,000, 22,000" in table
    assert "(µs CPU per event 70.0, 64.5)" in table
    assert "| tiny_vs_raw_two_hop_interleaved | 1.00 | - | - | - |" in table


def test_cpu_columns_the_floor_and_their_ratios() -> None:
    result = _result(pipeline=20_000.0, raw_two_hop=25_000.0, quix_n=5_000.0)
    for r in result["runs"]:  # the pipeline 80 µs of CPU per event, the raw design 50, Quix 400
        us = {"pipeline": 80.0, "raw_two_hop": 50.0, "quix_n": 400.0}.get(r["design"], 100.0)
        r.update(cpu_us_per_event=us, events_per_cpu_s=1e6 / us)
    result["floor"] = {"tiny": {"cpu_us_per_event": 40.0, "events_per_s": 24_000.0}}
    cpu = cpu_ratios(result)
    assert cpu["tiny_vs_raw_two_hop"] == 50.0 / 80.0 and cpu["tiny_vs_quix_n"] == 5.0
    assert cpu["tiny_vs_raw_loop"] is None
    assert floor_ratios(result) == {"tiny": 2.0}
    table = markdown(result)
    assert (
        "| tiny | raw two-hop, plain confluent-kafka + fastavro | 2 | 25,000 | 0.80 | 20,000 | 50.0 | 0.62 |" in table
    )
    assert "| tiny | Quix Streams 3.28, N instances | 2 | 5,000 | 4.00 | 2,500 | 400.0 | 5.00 |" in table
    assert "| tiny | the job alone, no Kafka (the floor) | 1 | 24,000 | 0.83 | 25,000 | 40.0 | 0.50 |" in table
    assert "the floor 40.0 µs CPU/event, the pipeline 80.0, pipeline / floor 2.00" in table
    assert "| tiny_vs_quix_n | 4.00 | - | - | 5.00 |" in table
    assert "The host over each tiny backlog" not in table  # no host figures, no line


def test_the_host_beside_each_design() -> None:
    result = _result(pipeline=20_000.0, raw_two_hop=25_000.0, quix=0.0)
    for r in result["runs"]:
        r.update(host_cores_busy=1.95, rest_cpu_us_per_event=12.34)
    next(r for r in result["runs"] if (r["design"], r["model"]) == ("pipeline", "tiny")).update(
        busiest_process_cores=0.987
    )
    table = markdown(result)
    assert (
        "this pipeline 1.95 cores busy (its busiest process 0.99), the rest 12.3 µs/event beside its own "
        "100.0; raw two-hop, plain confluent-kafka + fastavro 1.95 cores busy, the rest 12.3 µs/event beside "
        "its own 100.0." in table
    )
    assert "Quix Streams 3.28 1.95" not in table  # a failed run has no host figures


def test_every_designs_latency_at_the_pipelines_rates_and_the_p99_target() -> None:
    result = _result(pipeline=20_000.0, raw_two_hop=25_000.0, faust_per_event=4_000.0)
    result["batch_max_wait_ms"] = 20
    point = {"sent_per_s": 1.0, "events": 100, "received": 100, "p95_ms": 1.0, "max_ms": 1.0}
    point |= {"generator_cpu_pct": 12.0, "reader_cpu_pct": 3.0, "design_cpu_us_per_event": 150.0}
    rates = (5_000.0, 10_000.0, 15_000.0)
    p99s = {"pipeline": (40.0, 90.0, 900.0), "raw_two_hop": (10.0, 30.0, 60.0), "faust_per_event": (300.0,)}
    for r in result["runs"]:
        if r["model"] == "tiny" and r["design"] in p99s:
            mine = p99s[r["design"]]
            r["curve"] = [
                dict(point, offered_per_s=rate, p50_ms=p99 / 2, p99_ms=p99)
                for rate, p99 in zip(rates, mine, strict=False)
            ]
            r["above_maximum"] = list(rates[len(mine) :])
    assert latency_vs_raw(result) == {"25%": 30.0, "50%": 60.0}
    table = markdown(result)
    assert "| this pipeline | 20 / 40 (150 µs) | 45 / 90 (150 µs) | 450 / 900 (150 µs) | 12 | 3 |" in table
    assert "| raw two-hop, plain confluent-kafka + fastavro | 5 / 10 (150 µs) | 15 / 30 (150 µs) |" in table
    assert "| Faust, one event at a time | 150 / 300 (150 µs) | over max | over max | 12 | 3 |" in table
    assert "at 25% +30 ms (met), at 50% +60 ms (missed)" in table


def test_memory_is_compared_on_the_work_both_designs_were_given() -> None:
    result = _result(pipeline=20_000.0, raw_two_hop=15_000.0)
    mine = next(r for r in result["runs"] if r["design"] == "pipeline" and r["model"] == "tiny")
    raw = next(r for r in result["runs"] if r["design"] == "raw_two_hop")
    # the pipeline's peak so far after each window: 25, 50, 75% of its maximum, then 100% (20,000/s)
    mine["backlog_peak_rss_mb"], mine["latency"]["peak_rss_mb"] = 280.0, 281.0
    for point, peak in zip(mine["curve"], (282.0, 290.0, 300.0, 390.0), strict=True):
        point["peak_rss_mb"] = peak
    # the raw design, slower, was offered the common rate and the pipeline's 25, 50 and 75% (15,000/s)
    raw["curve"] = [dict(p) for p in mine["curve"][:3]]
    raw["peak_rss_mb"], raw["backlog_peak_rss_mb"] = 200.0, 190.0
    mine["peak_rss_mb"] = 390.0

    m = memory_vs_raw(result)
    assert m["whole_run"] == 390.0 / 200.0
    assert m["pipeline_same_work_mb"] == 300.0 and m["same_work"] == 1.5
    assert "1.50 on the same work" in markdown(result) and "at most 1.5: met" in markdown(result)

    raw["curve"] = raw["curve"][:1]  # offered only 25%: the pipeline's peak up to that window
    assert memory_vs_raw(result)["pipeline_same_work_mb"] == 282.0

    del mine["curve"][3]["peak_rss_mb"]  # a run without the per-window peaks: no same-work figure
    assert memory_vs_raw(result)["same_work"] is None and memory_vs_raw(result)["whole_run"] == 1.95
    assert "1.95 over each whole run" in markdown(result)


def _window(p99: float, **extra: float) -> LatencyPoint:
    return LatencyPoint(
        offered_per_s=1000.0, sent_per_s=extra.get("sent", 1000.0), events=8000, received=8000,
        p50_ms=p99 / 3, p95_ms=p99 / 2, p99_ms=p99, max_ms=p99 * 2,
        generator_cpu_pct=extra.get("gen", 20.0), design_cpu_pct=50.0, design_cpu_us_per_event=80.0,
        peak_rss_mb=extra.get("rss", 300.0),
    )  # fmt: skip


def test_a_point_measured_in_windows_is_their_median_with_each_windows_p99_kept() -> None:
    point = median_window([_window(90.0), _window(1_031.0, gen=26.0, rss=320.0), _window(80.0, sent=990.0)])
    assert (point.p50_ms, point.p95_ms, point.p99_ms) == (30.0, 45.0, 90.0)  # one window's hiccup decides nothing
    assert point.p99_windows_ms == (90.0, 1_031.0, 80.0)
    assert point.max_ms == 2_062.0 and point.peak_rss_mb == 320.0  # the worst window's
    assert (point.events, point.received, point.sent_per_s) == (24_000, 24_000, 990.0)
    assert point.generator_cpu_pct == 22.0
    one = _window(90.0)
    assert median_window([one]) is one and one.p99_windows_ms == ()
    with pytest.raises(ValueError):
        median_window([])


def test_the_judged_points_windows_are_listed_beside_their_targets() -> None:
    result = _result(pipeline=20_000.0, raw_two_hop=25_000.0, pipeline_eos=17_000.0)
    result["batch_max_wait_ms"] = 20
    for r in result["runs"]:
        if r["model"] != "tiny":
            continue
        windows = {"pipeline": [30.0, 25.0, 400.0], "raw_two_hop": [10.0, 12.0, 9.0], "pipeline_eos": [60, 95, 70]}
        r["latency"] = dict(r["latency"], p99_windows_ms=windows[r["design"]])
        r["curve"] = [dict(r["latency"], offered_per_s=20_000.0 * f) for f in (0.25, 0.5)]
    table = markdown(result)
    assert "Each is the median of its windows' p99s: this pipeline 30, 25, 400; " in table
    assert "this pipeline, exactly once 60, 95, 70 ms." in table
    assert "Each p99 is the median of its windows': this pipeline at 25% 30, 25, 400; " in table
    assert "raw two-hop, plain confluent-kafka + fastavro at 50% 10, 12, 9 ms." in table
