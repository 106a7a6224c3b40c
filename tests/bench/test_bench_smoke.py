"""`scripts/bench --quick` as a smoke test: it runs end to end on the suite's broker and its JSON has the
shape the README and the issue promise. Timing is not asserted (the machine is shared and noisy); every
figure must only be there and positive.

Deselect with ``-m "not slow"`` (it takes one to two minutes).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RATIOS = {
    "minilm_vs_ort", "tiny_vs_raw_loop", "tiny_vs_raw_two_hop", "tiny_vs_faust_per_event", "tiny_vs_faust_per_event_n",
    "tiny_vs_quix", "tiny_vs_quix_n", "tiny_eos_vs_alo", "tiny_vs_raw_two_hop_interleaved",
}  # fmt: skip
FULL_RUN_ONLY = {"tiny_vs_raw_two_hop_interleaved"}  # the pipeline drains one backlog in quick mode, not legs
DESIGNS = {
    "pipeline",
    "pipeline_eos",
    "raw_loop",
    "raw_two_hop",
    "faust_per_event",
    "faust_per_event_n",
    "quix",
    "quix_n",
}

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.timeout(600)
def test_quick_bench_writes_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap}
    done = subprocess.run(
        [str(REPO / "scripts" / "bench"), "--quick", "--json", str(out), "--out", str(tmp_path / "results")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())

    assert set(result["ratios"]) == RATIOS
    assert all(_positive(v) for k, v in result["ratios"].items() if k not in FULL_RUN_ONLY), result["ratios"]
    assert all(result["ratios"][k] is None for k in FULL_RUN_ONLY) and result["interleaved"] == {}
    assert all(_positive(v) for v in result["ceilings_events_per_s"].values())
    assert {"tiny", "minilm-l6"} <= set(result["ceilings_events_per_s"])
    # the pipeline's CPU efficiency against every peer, and against the floor (the job alone, no Kafka)
    assert all(_positive(v) for v in result["cpu_ratios"].values()), result["cpu_ratios"]
    assert all(_positive(result["floor"][m]["cpu_us_per_event"]) for m in ("tiny", "minilm-l6"))
    assert all(_positive(v) for v in result["floor_ratios"].values()), result["floor_ratios"]

    runs = {(r["design"], r["model"]): r for r in result["runs"]}
    assert {(d, "tiny") for d in DESIGNS} | {("pipeline", "minilm-l6")} <= set(runs)
    for (design, model), r in runs.items():
        assert r["error"] is None, f"{design}/{model}: {r['error']}"
        assert _positive(r["events_per_s"]) and _positive(r["peak_rss_mb"]), (design, model)
        assert 0 < r["backlog_peak_rss_mb"] <= r["peak_rss_mb"], (design, model)
        assert _positive(r["events_per_cpu_s"]) and _positive(r["cpu_us_per_event"]), (design, model)
        # the host over the same drain: busy at least as much as the design's own CPU, at most every core
        assert 0 < r["host_cores_busy"] <= result["machine"]["cpus"] + 0.1, (design, model, r["host_cores_busy"])
        assert r["rest_cpu_us_per_event"] >= 0, (design, model)
        # each process's share of the same drain: none more than the tree, and the busiest at most every core
        per_process = r["process_cpu_us_per_event"]
        assert per_process and sum(per_process) <= r["cpu_us_per_event"] + 0.01, (design, model, per_process)
        assert 0 < r["busiest_process_cores"] <= result["machine"]["cpus"] + 0.1, (design, model)
        lat = r["latency"]
        if design in ("raw_two_hop", "faust_per_event_n", "quix_n"):
            continue  # quick mode: events/s and CPU only (bench.main.QUICK_NO_LATENCY)
        assert lat["received"] == lat["events"], (design, model, lat)
        assert all(_positive(lat[k]) for k in ("p50_ms", "p95_ms", "p99_ms")), (design, model, lat)
        assert lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]

    curve = runs[("pipeline", "tiny")]["curve"]
    assert len(curve) == 4
    maximum = runs[("pipeline", "tiny")]["events_per_s"]
    assert [round(p["offered_per_s"] / maximum, 2) for p in curve] == [0.25, 0.5, 0.75, 1.0]
    assert all(_positive(p["p99_ms"]) for p in curve)
    assert all(_positive(p["generator_cpu_pct"]) for p in curve)  # the load's own CPU, beside its latency
    assert _positive(sum(p["reader_cpu_pct"] for p in curve))
    assert all(_positive(p["design_cpu_us_per_event"]) for p in curve)
    # the judged points (the common rate, 25 and 50% of the maximum) are the median of their windows
    pipeline_windows = [len(p["p99_windows_ms"]) for p in [runs[("pipeline", "tiny")]["latency"], *curve]]
    assert pipeline_windows == [2, 2, 2, 0, 0], pipeline_windows
    assert len(runs[("pipeline_eos", "tiny")]["latency"]["p99_windows_ms"]) == 2
    assert runs[("raw_loop", "tiny")]["latency"]["p99_windows_ms"] == []  # not judged: one window
    # where the memory peaked: the tree's peak after each window, never below the backlog's
    peaks = [p["peak_rss_mb"] for p in curve]
    assert runs[("pipeline", "tiny")]["backlog_peak_rss_mb"] <= peaks[0] and peaks == sorted(peaks)
    assert all(_positive(v) for v in result["memory_vs_raw_two_hop"].values()), result["memory_vs_raw_two_hop"]
    # The raw loop is offered the pipeline's own rates below its maximum (or says which were over its own).
    raw = runs[("raw_loop", "tiny")]
    offered = sorted([p["offered_per_s"] for p in raw["curve"]] + raw["above_maximum"])
    assert [round(rate / maximum, 2) for rate in offered] == [0.25, 0.5, 0.75]

    folder = tmp_path / "results"
    assert (folder / "bench.md").read_text().count("|") > 20
    assert (folder / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
