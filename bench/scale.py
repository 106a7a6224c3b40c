"""`scripts/bench --scale`: what 1, 2 and 3 workers drain, and what each event costs them, for sizing.

Each point starts k pipeline workers (each with its worker id, its default process layout) on fresh
topics of 12 partitions, waits until every group is stable with k members, releases one backlog at once
and reads events/s (first output to last, broker append times) and the CPU seconds of every worker
process (``/proc``, from the release to the last output). On one host the workers share its cores, so
events/s says where the host saturates and CPU seconds per 1,000 events is what to multiply out: a fleet
needs about (events/s offered) x (CPU s per 1,000) / 1,000 cores, plus headroom.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.designs import DesignProcess, command
from bench.measure import DesignFailed, drain_backlog, wait_ready
from bench.run import _delete_topics
from bench.workload import backlog, fresh_settings, release

SCALE_PARTITIONS = 12
SCALE_EVENTS = {"tiny": 60_000, "minilm-l6": 1_500}
QUICK_EVENTS = {"tiny": 6_000, "minilm-l6": 150}


@dataclass
class ScalePoint:
    model: str
    workers: int
    events: int
    events_per_s: float = 0.0
    cpu_s: float = 0.0
    cpu_s_per_1000: float = 0.0
    peak_rss_mb: float = 0.0
    legs_events_per_s: list[float] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scale_point(
    bootstrap: str,
    model: str,
    workers: int,
    events: int,
    batch: int,
    log: Callable[[str], None],
    partitions: int = SCALE_PARTITIONS,
) -> ScalePoint:
    point = ScalePoint(model, workers, events)
    settings = fresh_settings(bootstrap, f"scale{workers}", model, partitions=partitions)
    try:
        records = backlog(settings, model, events)
        (worker,) = command("pipeline", settings, model, batch)
        cmds = [[*worker, "--worker-id", f"scale-{k}"] for k in range(workers)]
        groups = {f"{settings.group}.{name}": workers for name in ("input", "inference", "inference.priority")}
        with DesignProcess(cmds, settings) as proc:
            try:
                wait_ready(settings, groups, proc.alive, timeout_s=180)
                cpu: list[float] = []
                release(settings, records, lambda: cpu.append(proc.cpu_seconds()))
                started = time.time()
                tp = drain_backlog(
                    settings,
                    events,
                    proc.alive,
                    started,
                    max(180.0, events / 100),
                    lambda: cpu.append(proc.cpu_seconds()),
                )
                point.events_per_s = tp.events_per_s
                point.cpu_s = cpu[1] - cpu[0]
                point.cpu_s_per_1000 = 1000 * point.cpu_s / events
                log(
                    f"scale {model:9s} {workers} worker(s): {tp.events_per_s:9,.0f} events/s, "
                    f"{point.cpu_s_per_1000:.3f} CPU s per 1,000 events"
                )
            except DesignFailed as exc:
                raise DesignFailed(f"{workers} workers/{model}: {exc}\n--- output:\n{proc.output()}") from None
            finally:
                proc.stop()
                point.peak_rss_mb = proc.peak_rss_mb
    except DesignFailed as exc:
        point.error = str(exc)
        log(f"scale {model} {workers} worker(s) FAILED: {exc}")
    finally:
        _delete_topics(settings)
    return point


def run_scale(
    bootstrap: str,
    models: Sequence[str],
    batch: int,
    log: Callable[[str], None],
    quick: bool = False,
    workers: Sequence[int] = (1, 2, 3),
) -> list[ScalePoint]:
    sizes = QUICK_EVENTS if quick else SCALE_EVENTS
    if quick:
        return [scale_point(bootstrap, model, k, sizes[model], batch, log) for model in models for k in workers]
    # A broker just started runs its first backlogs at half speed or less (one worker on one host: 7k, 9k,
    # 11k, then 15k events/s, one after the other): one throwaway backlog first, then every count twice, in
    # rising then falling order, so that no count is measured only early or only late.
    log("scale: a throwaway backlog first, for a broker that has just started")
    scale_point(bootstrap, "tiny", 1, SCALE_EVENTS["tiny"], batch, log)
    points = []
    for model in models:
        legs: dict[int, list[ScalePoint]] = {k: [] for k in workers}
        for k in [*workers, *reversed(workers)]:
            legs[k].append(scale_point(bootstrap, model, k, sizes[model], batch, log))
        points += [mean_point(model, k, sizes[model], legs[k]) for k in workers]
    return points


def mean_point(model: str, workers: int, events: int, legs: Sequence[ScalePoint]) -> ScalePoint:
    """A count's legs as one point: the mean of their events/s and CPU, the highest RSS; failed if any leg did."""
    failed = next((leg.error for leg in legs if leg.error), None)
    point = ScalePoint(model, workers, events, legs_events_per_s=[leg.events_per_s for leg in legs], error=failed)
    if failed is None and legs:
        point.events_per_s = sum(leg.events_per_s for leg in legs) / len(legs)
        point.cpu_s = sum(leg.cpu_s for leg in legs) / len(legs)
        point.cpu_s_per_1000 = sum(leg.cpu_s_per_1000 for leg in legs) / len(legs)
        point.peak_rss_mb = max(leg.peak_rss_mb for leg in legs)
    return point


def scale_markdown(points: Sequence[ScalePoint], header: str) -> str:
    lines = [
        header,
        "",
        "| model | workers | events | events/s | each leg | vs 1 worker | CPU s per 1,000 events "
        "| peak RSS, all processes (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    one = {p.model: p.events_per_s for p in points if p.workers == 1 and not p.error}
    for p in points:
        if p.error:
            lines.append(f"| {p.model} | {p.workers} | {p.events} | failed | | | | |")
            continue
        base = one.get(p.model)
        ratio = f"{p.events_per_s / base:.2f}" if base else ""
        lines.append(
            f"| {p.model} | {p.workers} | {p.events:,} | {p.events_per_s:,.0f} | "
            f"{', '.join(f'{x:,.0f}' for x in p.legs_events_per_s) or '-'} | {ratio} | {p.cpu_s_per_1000:.3f} "
            f"| {p.peak_rss_mb:,.0f} |"
        )
    return "\n".join(lines) + "\n"
