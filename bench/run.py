"""One design on one model, start to finish: fresh topics, the design's processes started and ready, the
backlog released at once, its throughput and CPU, its latency at the offered rate(s), its peak RSS, and
the clean-up."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.cpu import CpuSplit, host_busy_seconds, pin
from bench.designs import DesignProcess, command, groups
from bench.measure import (
    ArrivalReader,
    DesignFailed,
    Generator,
    LatencyPoint,
    Throughput,
    drain_backlog,
    median_window,
    wait_ready,
)
from bench.workload import backlog, fresh_settings, release
from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin


@dataclass
class DesignRun:
    design: str
    model: str
    events: int
    events_per_s: float = 0.0  # the median leg's (one leg unless the phase asks for more)
    span_s: float = 0.0
    first_output_s: float = 0.0  # from the backlog's release to the first output
    processes: int = 1  # the design's processes (a launcher shell or supervisor aside)
    cpu_s: float = 0.0  # CPU seconds of the design's process tree while it drained the backlog (median leg)
    events_per_cpu_s: float = 0.0
    cpu_us_per_event: float = 0.0
    # The host over the same drain (median leg): its cores busy on average, and what the rest of it (the
    # broker, mostly, where it shares the cores; the bench's own watermark polls) spent per event beside
    # the design. A design's events/s on a saturated host is the cores over the two per-event costs summed.
    host_cores_busy: float = 0.0
    rest_cpu_us_per_event: float = 0.0
    # Each process of the design's tree over the same drain (median leg; the launcher or supervisor first,
    # then in start order): its CPU per event, and the busiest one's cores. One process near a whole core
    # bounds the design, whatever the host has to spare.
    process_cpu_us_per_event: list[float] = field(default_factory=list)
    busiest_process_cores: float = 0.0
    model_busy: float = 0.0  # share of the span the model was running (see measure.Throughput)
    peak_rss_mb: float = 0.0  # over the whole run: every leg, and the latency windows after the last
    backlog_peak_rss_mb: float = 0.0  # over the backlogs alone (the largest leg's), the same work for every design
    latency: LatencyPoint | None = None  # at the model's common offered rate
    # Latency against load: the pipeline's at fractions of its own maximum; every other design's at the
    # same absolute rates (the phase's ``rates``), so that the curves compare at equal offered load.
    curve: list[LatencyPoint] = field(default_factory=list)
    above_maximum: list[float] = field(default_factory=list)  # rates of ``rates`` over the design's maximum
    legs_events_per_s: list[float] = field(default_factory=list)  # every leg's events/s, in run order
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _LegCpu:
    """One backlog's CPU seconds, from its release to its last output: the design's tree's, the host's."""

    design_s: float
    host_s: float
    wall_s: float
    processes: tuple[float, ...] = ()  # each process's, the tree's root first, then in start order

    def host_cores(self) -> float:
        return self.host_s / self.wall_s if self.wall_s > 0 else 0.0

    def rest_s(self) -> float:
        """What the rest of the host spent meanwhile: the broker, mostly, and the bench's own polls."""
        return max(0.0, self.host_s - self.design_s)

    def busiest_cores(self) -> float:
        return max(self.processes, default=0.0) / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class Phase:
    """How long each part of a run is: the backlog, the latency windows, the offered rates."""

    events: int
    rate: float  # the offered rate every design sees for its latency figures
    seconds: float  # each latency window (0: no latency figures)
    curve: Sequence[float] = ()  # fractions of the measured maximum (the pipeline's curve)
    rates: Sequence[float] = ()  # absolute offered rates (another design's points on the pipeline's curve)
    # Backlogs drained one after the other, each by a fresh process on fresh topics; events/s is the
    # median leg's. With ``between`` (run_design) a ceiling is sampled between legs, so that a design
    # compared with its ceiling on a noisy host is compared with samples taken around each of its legs.
    legs: int = 1
    # Windows at each judged rate: the common rate, and every rate at most ``judged_fraction`` of the
    # reference maximum (``reference_per_s`` where the rates are another design's fractions, else the
    # design's own). Such a point is the windows' median (``median_window``): the targets compare p99s, and
    # one window's p99 can move by a hundred milliseconds with nothing changed.
    windows: int = 1
    judged_fraction: float = 0.5
    reference_per_s: float = 0.0


def run_design(
    bootstrap: str,
    design: str,
    model: str,
    batch: int,
    phase: Phase,
    log: Callable[[str], None],
    layout: str = "auto",
    between: Callable[[], None] | None = None,
    processes: int = 1,
    split: CpuSplit | None = None,
) -> DesignRun:
    """Every leg of ``phase`` (``between`` runs between two legs), the latency figures after the last;
    ``result`` takes the median leg. A failed leg ends the run with ``result.error`` saying how.
    ``processes`` is the pipeline's process count (a grouped peer runs that many copies); ``split``: the
    design runs on its cores, the latency generator and reader on the others.

    Each leg starts the design on empty topics and waits until its consumer groups are stable (started,
    model loaded, partitions assigned; with several members, every rebalance over), then releases the
    backlog in one transaction: every design meets the whole backlog at once, already running, and its
    CPU is read from /proc right before the release and right after the last output."""
    result = DesignRun(design, model, phase.events)
    legs: list[tuple[Throughput, _LegCpu]] = []

    def run_leg(latency: bool) -> None:
        """One backlog drained by a fresh process on fresh topics, then (``latency``) its latency figures."""
        settings = fresh_settings(bootstrap, design, model)
        try:
            records = backlog(settings, model, phase.events)
            cmds = command(design, settings, model, batch, layout, processes)
            result.processes = len(cmds) if design not in ("pipeline", "pipeline_eos") else processes
            with DesignProcess(cmds, settings, cpus=split.design if split else None) as proc:
                try:
                    launched = time.monotonic()
                    wait_ready(settings, groups(design, settings, processes), proc.alive)
                    log(f"{model:9s} {design:17s} ready in {time.monotonic() - launched:.1f} s")
                    cpu: list[tuple[dict[int, float], float, float]] = []  # each process's, the host's, the clock

                    def read_cpu() -> None:
                        cpu.append((proc.cpu_by_process(), host_busy_seconds(), time.monotonic()))

                    release(settings, records, read_cpu)
                    started = time.time()
                    timeout_s = max(180.0, phase.events / 200)
                    tp = drain_backlog(settings, phase.events, proc.alive, started, timeout_s, read_cpu)
                    (design0, host0, t0), (design1, host1, t1) = cpu
                    spent = tuple(design1[pid] - design0[pid] for pid in design1 if pid in design0)
                    leg = _LegCpu(sum(design1.values()) - sum(design0.values()), host1 - host0, t1 - t0, spent)
                    legs.append((tp, leg))
                    result.backlog_peak_rss_mb = max(result.backlog_peak_rss_mb, proc.peak_now_mb())
                    median, leg_cpu = sorted(legs, key=lambda leg: leg[0].events_per_s)[len(legs) // 2]
                    result.events_per_s, result.span_s = median.events_per_s, median.span_s
                    result.first_output_s, result.model_busy = median.first_output_s, median.model_busy
                    cpu_s = result.cpu_s = leg_cpu.design_s
                    result.events_per_cpu_s = phase.events / cpu_s if cpu_s > 0 else 0.0
                    result.cpu_us_per_event = 1e6 * cpu_s / phase.events
                    result.host_cores_busy = leg_cpu.host_cores()
                    result.rest_cpu_us_per_event = 1e6 * leg_cpu.rest_s() / phase.events
                    result.process_cpu_us_per_event = [1e6 * p / phase.events for p in leg_cpu.processes]
                    result.busiest_process_cores = leg_cpu.busiest_cores()
                    result.legs_events_per_s.append(tp.events_per_s)
                    this = legs[-1][1]
                    log(
                        f"{model:9s} {design:17s} {tp.events_per_s:9,.0f} events/s ({phase.events} in "
                        f"{tp.span_s:.2f} s, model busy {tp.model_busy:.0%}), {this.design_s:.2f} CPU s "
                        f"({1e6 * this.design_s / phase.events:,.0f} µs/event; the rest of the host "
                        f"{1e6 * this.rest_s() / phase.events:,.0f} µs/event, "
                        f"{this.host_cores():.2f} cores busy; per process "
                        + " + ".join(f"{1e6 * p / phase.events:,.0f}" for p in this.processes)
                        + f" µs/event, the busiest {this.busiest_cores():.2f} cores)"
                        + (f", leg {len(legs)} of {phase.legs}" if phase.legs > 1 else "")
                    )
                    if latency and phase.seconds > 0:
                        _measure_latency(
                            settings,
                            model,
                            design,
                            phase,
                            result.events_per_s,
                            result,
                            log,
                            split,
                            proc.cpu_seconds,
                            proc.peak_now_mb,
                        )
                except DesignFailed as exc:
                    raise DesignFailed(f"{design}/{model}: {exc}\n--- its output:\n{proc.output()}") from None
                finally:
                    proc.stop()  # the sampler's last reading included
                    result.peak_rss_mb = max(result.peak_rss_mb, proc.peak_rss_mb)
        finally:
            _delete_topics(settings)

    try:
        for leg in range(phase.legs):
            if leg and between is not None:
                between()
            run_leg(latency=leg == phase.legs - 1)
    except DesignFailed as exc:
        result.error = str(exc)
        log(f"{model:9s} {design:16s} FAILED: {exc}")
    return result


def _measure_latency(
    settings: Settings,
    model: str,
    design: str,
    phase: Phase,
    maximum: float,
    result: DesignRun,
    log: Callable[[str], None],
    split: CpuSplit | None = None,
    design_cpu: Callable[[], float] | None = None,
    design_peak_mb: Callable[[], float] | None = None,
) -> None:
    """At the phase's common rate, then at each curve fraction of ``maximum`` (the reported events/s) and at
    each of the phase's absolute rates. A rate over the design's own maximum is not offered: its backlog
    would only grow for the window, and the figure would be the window's length, not the design's latency."""
    reader = ArrivalReader(settings)
    everywhere = frozenset(os.sched_getaffinity(0))
    try:
        generator = Generator(settings, model)
        if split:  # this process's threads (the generator and its producer's) and the reader's, for the windows
            pin(os.getpid(), split.load)
            pin(reader.pid, split.load)
        generator.warm_up(reader)
        judged_up_to = phase.judged_fraction * (phase.reference_per_s or maximum) * 1.001

        def offer(rate: float, seed: int, what: str, judged: bool) -> LatencyPoint:
            windows = []
            for w in range(phase.windows if judged else 1):
                point = generator.offer(reader, rate, phase.seconds, seed=seed + 1000 * w, design_cpu=design_cpu)
                windows.append(_peaked(point, design_peak_mb))
                if phase.windows > 1 and judged:
                    _log_point(log, model, design, windows[-1], f"{what} window {w + 1} of {phase.windows}")
            merged = median_window(windows)
            _log_point(log, model, design, merged, f"{what} (the windows' median)" if len(windows) > 1 else what)
            return merged

        result.latency = offer(phase.rate, 100, "", True)
        for k, fraction in enumerate(phase.curve):
            rate = maximum * fraction
            result.curve.append(offer(rate, 101 + k, f"{fraction:.0%} of max", rate <= judged_up_to))
        for k, rate in enumerate(phase.rates):
            if rate > maximum:
                result.above_maximum.append(rate)
                log(f"{model:9s} {design:16s} {rate:8,.0f}/s is over its maximum ({maximum:,.0f}/s): not offered")
                continue
            result.curve.append(offer(rate, 111 + k, "(the pipeline's curve)", rate <= judged_up_to))
    finally:
        reader.close()
        if split:
            pin(os.getpid(), everywhere)


def _peaked(point: LatencyPoint, peak_mb: Callable[[], float] | None) -> LatencyPoint:
    return dataclasses.replace(point, peak_rss_mb=peak_mb()) if peak_mb else point


def _log_point(log: Callable[[str], None], model: str, design: str, p: LatencyPoint, what: str = "") -> None:
    log(
        f"{model:9s} {design:16s} offered {p.offered_per_s:8,.0f}/s (sent {p.sent_per_s:8,.0f}/s) "
        f"p50 {p.p50_ms:6.1f} p95 {p.p95_ms:6.1f} p99 {p.p99_ms:7.1f} ms; CPU: design {p.design_cpu_pct:.0f}% "
        f"({p.design_cpu_us_per_event:,.0f} µs/event), generator {p.generator_cpu_pct:.0f}%, reader "
        f"{p.reader_cpu_pct:.0f}% of a core, peak RSS so far {p.peak_rss_mb:,.0f} MB {what}"
    )


def _delete_topics(settings: Settings) -> None:
    """The run's topics, and whatever a framework made beside them (Faust's assignor topic), go: a broker
    that keeps every run's partitions gets slower to start and to answer."""
    prefix = settings.group  # every topic of the run starts with it (workload.fresh_settings)
    try:
        admin = connect_admin(settings)
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=15).values():
                with contextlib.suppress(Exception):  # already gone, or a slow broker: nothing to fail for
                    fut.result(timeout=20)
    except Exception:
        pass
