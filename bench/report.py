"""What a run leaves behind: the JSON (with a top-level ``ratios`` object), a markdown table with the
ratios against their targets, and a PNG (events/s per design; the pipeline's latency against load)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

TARGETS: dict[str, float | None] = {
    "minilm_vs_ort": 0.9,
    "tiny_vs_raw_loop": 0.7,
    "tiny_vs_raw_two_hop": None,
    "tiny_vs_raw_two_hop_interleaved": None,
    "tiny_vs_faust_per_event": 3.0,
    "tiny_vs_faust_per_event_n": None,
    "tiny_vs_quix": 1.5,
    "tiny_vs_quix_n": None,
    "tiny_eos_vs_alo": 0.8,
}
# Pipeline events per CPU-second over the other design's, on the tiny model.
CPU_DESIGNS = ("raw_loop", "raw_two_hop", "faust_per_event", "faust_per_event_n", "quix", "quix_n")
# The later target: the pipeline's CPU per event at most this many times the floor's.
FLOOR_TARGET = 1.4
# The pipeline's p99 may exceed the raw two-hop design's by at most two batch deadlines at these fractions
# of the pipeline's maximum.
LATENCY_TARGET_FRACTIONS = (0.25, 0.5)
# The pipeline's peak RSS, all its processes summed, at most this many times the raw two-hop design's on the
# same work.
MEMORY_TARGET = 1.5
# Exactly-once's p99 at the common offered rate may exceed at-least-once's by at most the commit interval
# (100 ms by default) plus this.
EOS_P99_MARGIN_MS = 20.0
NAMES = {
    "pipeline": "this pipeline",
    "pipeline_eos": "this pipeline, exactly once",
    "raw_loop": "raw confluent-kafka loop, one hop",
    "raw_two_hop": "raw two-hop, plain confluent-kafka + fastavro",
    "faust_per_event": "Faust, one event at a time",
    "faust_per_event_n": "Faust, one event at a time, N workers",
    "quix": "Quix Streams 3.28",
    "quix_n": "Quix Streams 3.28, N instances",
}


def _run(result: dict[str, Any], design: str, model: str) -> dict[str, Any] | None:
    for r in result["runs"]:
        if r["design"] == design and r["model"] == model and not r.get("error"):
            return r
    return None


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """Pipeline events/s over the other's (None where either side is missing)."""

    def over(model: str, other: str | float | None) -> float | None:
        mine = _run(result, "pipeline", model)
        if isinstance(other, str):
            theirs = _run(result, other, model)
            other = theirs["events_per_s"] if theirs else None
        if mine is None or not other:
            return None
        return float(mine["events_per_s"] / other)

    return {
        "minilm_vs_ort": over("minilm-l6", result["ceilings_events_per_s"].get("minilm-l6")),
        "tiny_vs_raw_loop": over("tiny", "raw_loop"),
        "tiny_vs_raw_two_hop": over("tiny", "raw_two_hop"),
        "tiny_vs_raw_two_hop_interleaved": interleaved_ratio(result, "tiny"),
        "tiny_vs_faust_per_event": over("tiny", "faust_per_event"),
        "tiny_vs_faust_per_event_n": over("tiny", "faust_per_event_n"),
        "tiny_vs_quix": over("tiny", "quix"),
        "tiny_vs_quix_n": over("tiny", "quix_n"),
        # exactly-once over at-least-once: the transactions' cost (the one ratio where the pipeline is below)
        "tiny_eos_vs_alo": _inverse(over("tiny", "pipeline_eos")),
    }


def interleaved_ratio(result: dict[str, Any], model: str) -> float | None:
    """The median of the pipeline's legs over the median of the backlogs drained between them (None where
    the run had no such drains)."""
    mine = _run(result, "pipeline", model)
    theirs = (result.get("interleaved") or {}).get(model) or {}
    legs = (mine or {}).get("legs_events_per_s") or []
    if not legs or not theirs.get("events_per_s"):
        return None
    return float(statistics.median(legs) / statistics.median(theirs["events_per_s"]))


def _inverse(value: float | None) -> float | None:
    return 1.0 / value if value else None


def cpu_ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """Pipeline events per CPU-second over the other design's, on the tiny model (None where either side is
    missing or has no CPU figure)."""
    mine = _run(result, "pipeline", "tiny")
    out: dict[str, float | None] = {}
    for design in CPU_DESIGNS:
        theirs = _run(result, design, "tiny")
        if mine and theirs and mine.get("events_per_cpu_s") and theirs.get("events_per_cpu_s"):
            out[f"tiny_vs_{design}"] = float(mine["events_per_cpu_s"] / theirs["events_per_cpu_s"])
        else:
            out[f"tiny_vs_{design}"] = None
    return out


def floor_ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """Per model, the pipeline's CPU µs per event over the floor's (the job alone, no Kafka)."""
    out: dict[str, float | None] = {}
    for model, floor in (result.get("floor") or {}).items():
        mine = _run(result, "pipeline", model)
        if mine and mine.get("cpu_us_per_event") and floor.get("cpu_us_per_event"):
            out[model] = float(mine["cpu_us_per_event"] / floor["cpu_us_per_event"])
        else:
            out[model] = None
    return out


def eos_p99_added_ms(result: dict[str, Any]) -> float | None:
    """Exactly-once's p99 minus at-least-once's, on the tiny model at the common offered rate."""
    alo, eos = _run(result, "pipeline", "tiny"), _run(result, "pipeline_eos", "tiny")
    if not alo or not eos or not alo.get("latency") or not eos.get("latency"):
        return None
    return float(eos["latency"]["p99_ms"] - alo["latency"]["p99_ms"])


def memory_vs_raw(result: dict[str, Any], model: str = "tiny") -> dict[str, float | None]:
    """The pipeline's peak RSS over the raw two-hop design's, two ways. ``whole_run``: each design's peak
    over its whole run. ``same_work``: the pipeline's peak up to the end of the last latency window at a
    rate the raw design was offered too (its backlogs included), over the raw design's: a slower design is
    not offered the pipeline's higher rates, where the pipeline queues more in flight. None where a run or
    its per-window peaks are missing."""
    mine, raw = _run(result, "pipeline", model), _run(result, "raw_two_hop", model)
    out: dict[str, float | None] = {"whole_run": None, "same_work": None, "pipeline_same_work_mb": None}
    if not mine or not raw or not raw.get("peak_rss_mb"):
        return out
    out["whole_run"] = float(mine["peak_rss_mb"] / raw["peak_rss_mb"])
    theirs = [p for p in [raw.get("latency"), *raw.get("curve", [])] if p]
    points = [p for p in [mine.get("latency"), *mine.get("curve", [])] if p]
    if not mine.get("backlog_peak_rss_mb") or any(not p.get("peak_rss_mb") for p in points):
        return out
    highest = max((p["offered_per_s"] for p in theirs), default=0.0) * 1.01
    same = max([mine["backlog_peak_rss_mb"]] + [p["peak_rss_mb"] for p in points if p["offered_per_s"] <= highest])
    out["pipeline_same_work_mb"] = float(same)
    out["same_work"] = float(same / raw["peak_rss_mb"])
    return out


def _memory_line(result: dict[str, Any], model: str = "tiny") -> list[str]:
    m = memory_vs_raw(result, model)
    if m["whole_run"] is None:
        return []
    mine, raw = _run(result, "pipeline", model), _run(result, "raw_two_hop", model)
    assert mine is not None and raw is not None
    whole = (
        f"{m['whole_run']:.2f} over each whole run (the pipeline {mine['peak_rss_mb']:,.0f} MB, the raw "
        f"two-hop design {raw['peak_rss_mb']:,.0f} MB)"
    )
    if m["same_work"] is None:
        return ["", f"Memory ({model}), the pipeline's peak RSS over the raw two-hop design's: {whole}."]
    met = "met" if m["same_work"] <= MEMORY_TARGET else "missed"
    return [
        "",
        f"Memory ({model}), the pipeline's peak RSS over the raw two-hop design's: {m['same_work']:.2f} on the "
        f"same work (the backlogs and every rate both were offered: the pipeline {m['pipeline_same_work_mb']:,.0f} "
        f"MB; its backlogs alone {mine['backlog_peak_rss_mb']:,.0f} MB, the raw design's "
        f"{raw.get('backlog_peak_rss_mb') or 0:,.0f}) (target: at most {MEMORY_TARGET}: {met}); {whole}, where "
        "the pipeline's also holds the rates above the raw design's maximum.",
    ]


def _ms(point: dict[str, Any] | None, key: str) -> str:
    return f"{point[key]:,.0f}" if point else "-"


def _layout(result: dict[str, Any]) -> str:
    groups = result.get("pipeline_processes") or []
    if len(groups) > 1:
        return (
            f"The pipeline runs {len(groups)} processes ({', '.join(groups)}) under a supervisor, one per role "
            f"(process_per_role {result.get('pipeline_process_per_role', 'auto')}); the raw two-hop design "
            f"runs a process per hop, and the N-instance peers run {len(groups)} copies in one consumer group. "
        )
    return (
        "The pipeline runs both roles in one process; so does every other design (the raw two-hop: a thread per hop). "
    )


def _legs(result: dict[str, Any]) -> str:
    """Where a design drained several backlogs: each one's events/s (the table shows the median)."""
    parts = [
        f"{NAMES.get(r['design'], r['design'])} on {r['model']} "
        + ", ".join(f"{v:,.0f}" for v in r["legs_events_per_s"])
        for r in result["runs"]
        if len(r.get("legs_events_per_s") or []) > 1
    ]
    for model, partner in (result.get("interleaved") or {}).items():
        if partner.get("events_per_s"):
            parts.append(
                f"{NAMES.get(partner['design'], partner['design'])} on {model}, between the pipeline's legs "
                + ", ".join(f"{v:,.0f}" for v in partner["events_per_s"])
                + " (µs CPU per event "
                + ", ".join(f"{v:,.1f}" for v in partner["cpu_us_per_event"])
                + ")"
            )
    if not parts:
        return ""
    return (
        " Legs (backlogs drained one after the other, fresh process and topics each; the median is shown): "
        + "; ".join(parts)
        + "."
    )


def markdown(result: dict[str, Any]) -> str:
    batch = result["batch_size"]
    lines = [
        f"One broker and every design on {result['machine']['cpus']} cores; batch size {batch}; "
        f"{result['partitions']} partitions; load average before the run "
        f"{result['machine']['load_before']}, after {result['machine']['load_after']}.",
        _layout(result)
        + "Events/s: a backlog released at once (one transaction) to the design once it runs and its consumer "
        "groups are stable, first output to last output (broker append time). "
        "Latency: receive time on the output topic minus `created_at`, at the offered rate shown. RSS: each process's "
        "own peak (VmHWM), summed over the design's process tree (a pid that exec'd counts the program it became: the "
        "pipeline's command, once it has read its settings, becomes its supervisor). Model busy: the share of the "
        "events/s span the model was running, summed from the results' batch inference times. ONNX Runtime alone: the "
        "same requests through the pipeline's model runner, measured right before the pipeline's run, between its legs"
        " and right after it (the median is shown): "
        + "; ".join(
            f"{m} " + ", ".join(f"{v:,.0f}" for v in vs)
            for m, vs in result.get("ceiling_samples_events_per_s", {}).items()
        )
        + "."
        + _legs(result),
        "CPU: utime+stime of the design's whole process tree (children included) from /proc, read right "
        "before the backlog is released to the running design and right after its last output; pipeline ÷ "
        "this (CPU) is the pipeline's events per CPU-second over the design's. The floor: the job alone in "
        "one process, no Kafka (decode, validate, encode the forward, decode again, the model in batches, "
        "build and encode the result), on the pipeline's own code." + _floor_line(result) + _host_line(result),
        "",
        "| model | design | processes | events/s | pipeline ÷ this | events/CPU-s | µs CPU/event "
        "| pipeline ÷ this (CPU) | model busy | offered/s | p50 ms | p95 ms | p99 ms | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in result["models"]:
        lines += _model_rows(result, model)
    cpu = result.get("cpu_ratios") or cpu_ratios(result)
    lines += [
        "",
        "| ratio (pipeline over the other) | events/s | target | met | events/CPU-s |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for key, value in result["ratios"].items():
        target = TARGETS.get(key)
        shown = f"{value:.2f}" if value is not None else "n/a"
        met = "-" if target is None else "yes" if value is not None and value >= target else "no"
        per_cpu = cpu.get(key)
        lines.append(
            f"| {key} | {shown} | {target if target is not None else '-'} | {met} | "
            f"{f'{per_cpu:.2f}' if per_cpu is not None else '-'} |"
        )
    added = eos_p99_added_ms(result)
    if added is not None:
        most = result.get("commit_interval_ms", 100) + EOS_P99_MARGIN_MS
        alo, eos = _run(result, "pipeline", "tiny"), _run(result, "pipeline_eos", "tiny")
        windows = [
            f"{NAMES[d]} {_windows(r['latency'])}"
            for d, r in (("pipeline", alo), ("pipeline_eos", eos))
            if r and r["latency"].get("p99_windows_ms")
        ]
        lines += [
            "",
            f"Exactly-once's p99 at the common offered rate (tiny): {added:+,.0f} ms against at-least-once "
            f"(target: at most the commit interval plus {EOS_P99_MARGIN_MS:.0f} ms, {most:.0f} ms: "
            f"{'met' if added <= most else 'missed'})."
            + (f" Each is the median of its windows' p99s: {'; '.join(windows)} ms." if windows else ""),
        ]
    lines += _memory_line(result)
    for model in result["models"]:
        lines += _curve_rows(result, model)
    return "\n".join(lines) + "\n"


def _at(r: dict[str, Any], rate: float) -> dict[str, Any] | None:
    """The design's curve point offered at ``rate`` (the same rate, as computed from one maximum)."""
    return next((p for p in r.get("curve", []) if abs(p["offered_per_s"] - rate) <= 0.01 * rate), None)


def latency_vs_raw(result: dict[str, Any], model: str = "tiny") -> dict[str, float | None]:
    """Per shared rate (25 and 50% of the pipeline's maximum): the pipeline's p99 minus the raw two-hop
    design's, against the target of at most two batch deadlines (``batch_max_wait_ms``) more."""
    return {
        f"{fraction:.0%}": a["p99_ms"] - b["p99_ms"] if a and b else None
        for fraction, a, b in _judged_points(result, model)
    }


def _judged_points(
    result: dict[str, Any], model: str
) -> list[tuple[float, dict[str, Any] | None, dict[str, Any] | None]]:
    """At each fraction the latency target judges: the pipeline's curve point and the raw two-hop design's at
    the same rate (None where a design has none)."""
    mine, raw = _run(result, "pipeline", model), _run(result, "raw_two_hop", model)
    if mine is None:
        return []
    rates = [(fraction, mine["events_per_s"] * fraction) for fraction in LATENCY_TARGET_FRACTIONS]
    return [(fraction, _at(mine, rate), _at(raw, rate) if raw else None) for fraction, rate in rates]


def _curve_rows(result: dict[str, Any], model: str) -> list[str]:
    """Every design's p50/p99 at the pipeline's curve rates, with the load's own CPU beside."""
    mine = _run(result, "pipeline", model)
    if mine is None or not mine.get("curve"):
        return []
    rates = [p["offered_per_s"] for p in mine["curve"]]
    head = " | ".join(f"{rate:,.0f}/s ({rate / mine['events_per_s']:.0%})" for rate in rates)
    lines = [
        "",
        f"Latency against load ({model}): p50 / p99 ms at the same offered rates, fractions of the pipeline's "
        f"maximum ({mine['events_per_s']:,.0f} events/s), and in brackets the design's CPU per event offered "
        "over the window (a backlog's batches are full, a stream's are not); `over max`: above the design's own "
        "maximum, not offered. Generator and reader: the load's own CPU, in % of one core, over the windows "
        "(range).",
        "",
        f"| design | {head} | generator % | reader % |",
        "| --- |" + " ---: |" * (len(rates) + 2),
    ]
    for r in result["runs"]:
        if r["model"] != model or r.get("error") or not (r.get("curve") or r.get("above_maximum")):
            continue
        cells = []
        for rate in rates:
            p = _at(r, rate)
            over = any(abs(x - rate) <= 0.01 * rate for x in r.get("above_maximum", []))
            cpu = f" ({p['design_cpu_us_per_event']:,.0f} µs)" if p and p.get("design_cpu_us_per_event") else ""
            cells.append(f"{p['p50_ms']:,.0f} / {p['p99_ms']:,.0f}{cpu}" if p else "over max" if over else "-")
        gen = [p.get("generator_cpu_pct", 0.0) for p in r.get("curve", [])]
        rd = [p.get("reader_cpu_pct", 0.0) for p in r.get("curve", [])]
        lines.append(f"| {NAMES.get(r['design'], r['design'])} | {' | '.join(cells)} | {_span(gen)} | {_span(rd)} |")
    added = latency_vs_raw(result, model)
    deadline = result.get("batch_max_wait_ms")
    if added and deadline is not None and any(v is not None for v in added.values()):
        most = 2 * deadline
        parts = [f"at {k} {v:+,.0f} ms ({'met' if v <= most else 'missed'})" for k, v in added.items() if v is not None]
        lines += [
            "",
            f"The pipeline's p99 over the raw two-hop design's (target: at most two batch deadlines, "
            f"{most:.0f} ms): " + ", ".join(parts) + "." + _judged_windows(result, model),
        ]
    return lines


def _windows(point: dict[str, Any]) -> str:
    return ", ".join(f"{v:,.0f}" for v in point.get("p99_windows_ms") or ())


def _judged_windows(result: dict[str, Any], model: str) -> str:
    """Where the judged points were measured in several windows: each window's p99, design by design."""
    parts = [
        f"{NAMES[design]} at {fraction:.0%} {_windows(point)}"
        for fraction, mine, raw in _judged_points(result, model)
        for design, point in (("pipeline", mine), ("raw_two_hop", raw))
        if point and point.get("p99_windows_ms")
    ]
    return f" Each p99 is the median of its windows': {'; '.join(parts)} ms." if parts else ""


def _span(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"


def _floor_line(result: dict[str, Any]) -> str:
    parts = []
    for model, ratio in floor_ratios(result).items():
        floor = result["floor"][model]
        mine = _run(result, "pipeline", model)
        if ratio is None or mine is None:
            continue
        parts.append(
            f"{model}: the floor {floor['cpu_us_per_event']:,.1f} µs CPU/event, the pipeline "
            f"{mine['cpu_us_per_event']:,.1f}, pipeline / floor {ratio:.2f} (target later: at most {FLOOR_TARGET})"
        )
    return (" " + "; ".join(parts) + ".") if parts else ""


def _host_line(result: dict[str, Any], model: str = "tiny") -> str:
    """Where a backlog's host went: on a host whose cores every design shares with the broker, a design
    that keeps them all busy can only go faster by costing less per event, its own CPU and the broker's."""
    parts = []
    for r in result["runs"]:
        if r["model"] != model or r.get("error") or not r.get("host_cores_busy"):
            continue
        busiest = f" (its busiest process {r['busiest_process_cores']:.2f})" if r.get("busiest_process_cores") else ""
        parts.append(
            f"{NAMES.get(r['design'], r['design'])} {r['host_cores_busy']:.2f} cores busy{busiest}, the rest "
            f"{r['rest_cpu_us_per_event']:,.1f} µs/event beside its own {r['cpu_us_per_event']:,.1f}"
        )
    if not parts:
        return ""
    return (
        f" The host over each {model} backlog (median leg; /proc/stat from the release to the last output, "
        "less the design's own CPU: the broker, mostly, and the bench's watermark polls): " + "; ".join(parts) + "."
    )


def _cpu_cells(r: dict[str, Any], pipeline: dict[str, Any] | None) -> str:
    per_cpu, us = r.get("events_per_cpu_s"), r.get("cpu_us_per_event")
    if not per_cpu or not us:
        return "- | - | -"
    mine = pipeline.get("events_per_cpu_s") if pipeline else None
    return f"{per_cpu:,.0f} | {us:,.1f} | {f'{mine / per_cpu:.2f}' if mine else '-'}"


def _model_rows(result: dict[str, Any], model: str) -> list[str]:
    batch = result["batch_size"]
    lines = []
    pipeline = _run(result, "pipeline", model)
    ceiling = result["ceilings_events_per_s"].get(model)
    if ceiling:
        vs = f"{pipeline['events_per_s'] / ceiling:.2f}" if pipeline else "-"
        lines.append(
            f"| {model} | ONNX Runtime alone (batch {batch}) | 1 | {ceiling:,.0f} | {vs} | - | - | - | 100% | | | | | |"
        )
    floor = (result.get("floor") or {}).get(model)
    if floor:
        vs = f"{pipeline['events_per_s'] / floor['events_per_s']:.2f}" if pipeline else "-"
        cells = _cpu_cells({"events_per_cpu_s": 1e6 / floor["cpu_us_per_event"], **floor}, pipeline)
        lines.append(
            f"| {model} | the job alone, no Kafka (the floor) | 1 | {floor['events_per_s']:,.0f} | {vs} | {cells} "
            "| | | | | | |"
        )
    for r in result["runs"]:
        if r["model"] != model:
            continue
        name = NAMES.get(r["design"], r["design"])
        procs = r.get("processes", 1)
        if r.get("error"):
            lines.append(f"| {model} | {name} | {procs} | failed | | | | | | | | | | {r['peak_rss_mb']:,.0f} |")
            continue
        vs = f"{pipeline['events_per_s'] / r['events_per_s']:.2f}" if pipeline and r["events_per_s"] else "-"
        lat = r.get("latency")
        offered = f"{lat['offered_per_s']:,.0f}" if lat else "-"
        lines.append(
            f"| {model} | {name} | {procs} | {r['events_per_s']:,.0f} | {vs} | {_cpu_cells(r, pipeline)} | "
            f"{r.get('model_busy', 0.0):.0%} | {offered} | {_ms(lat, 'p50_ms')} | "
            f"{_ms(lat, 'p95_ms')} | {_ms(lat, 'p99_ms')} | {r['peak_rss_mb']:,.0f} |"
        )
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    """Left: events/s per design and model (log scale), ceilings included. Right: every design's p99
    against offered load on the tiny model, at the same rates (% of the pipeline's maximum)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, curve) = plt.subplots(1, 2, figsize=(12, 4.5))
    models = result["models"]
    designs = ["ort", *NAMES]
    width = 0.8 / len(designs)
    for k, design in enumerate(designs):
        values = []
        for model in models:
            if design == "ort":
                values.append(result["ceilings_events_per_s"].get(model) or 0.0)
            else:
                r = _run(result, design, model)
                values.append(r["events_per_s"] if r else 0.0)
        label = "ONNX Runtime alone" if design == "ort" else NAMES[design]
        bars.bar([m + (k - len(designs) / 2 + 0.5) * width for m in range(len(models))], values, width, label=label)
    bars.set_xticks(range(len(models)), models)
    bars.set_yscale("log")
    bars.set_ylabel("events/s (backlog)")
    bars.set_title("Throughput, one run")
    bars.legend(fontsize=8)
    bars.grid(True, axis="y", which="both", alpha=0.3)
    model = "tiny" if "tiny" in models else models[0] if models else ""
    mine = _run(result, "pipeline", model)
    for r in result["runs"]:
        if r["model"] != model or r.get("error") or not r.get("curve") or mine is None:
            continue
        points = sorted(r["curve"], key=lambda p: p["offered_per_s"])
        x = [100 * p["offered_per_s"] / mine["events_per_s"] for p in points]
        color = f"C{designs.index(r['design']) % 10}" if r["design"] in designs else None  # as its bar
        label = f"{NAMES.get(r['design'], r['design'])} p99"
        curve.plot(x, [p["p99_ms"] for p in points], marker="o", color=color, label=label)
    curve.set_xlabel("offered load (% of the pipeline's maximum events/s)")
    curve.set_ylabel("end-to-end latency (ms)")
    curve.set_yscale("log")
    curve.set_title(f"p99 against load, every design ({model})")
    curve.grid(True, which="both", alpha=0.3)
    curve.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
