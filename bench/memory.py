"""`python -m bench.memory`: where a design's memory goes while it drains a backlog, process by process.

``scripts/bench`` reports one figure per design, the peaks (``VmHWM``) of its processes summed; this
shows each process's own peak beside its size once the design was ready, so that a change to one role's
memory can be measured on that role. Designs run one after the other, each ``--runs`` times, alternating
(the host's speed and memory pressure drift between neighbouring runs), each on fresh topics.

    python -m bench.memory --designs pipeline,raw_two_hop --events 150000 --runs 2

The broker: ``KAFKA_BOOTSTRAP`` when set; else the benchmark's own local broker, started and stopped here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from bench.designs import DesignProcess, command, groups
from bench.main import broker
from bench.measure import drain_backlog, wait_ready
from bench.run import _delete_topics
from bench.workload import backlog, fresh_settings, release

MB = 2**20


@dataclass(frozen=True)
class ProcessPeak:
    pid: int
    label: str
    ready_mb: float  # its peak once the design was ready (start-up, model loaded, partitions assigned)
    peak_mb: float  # its peak over the whole run
    replaced_mb: float = 0.0  # the peak of the program it replaced by exec (the pipeline's command line)


@dataclass(frozen=True)
class MemoryRun:
    design: str
    events_per_s: float
    processes: tuple[ProcessPeak, ...]

    @property
    def total_mb(self) -> float:
        return sum(p.peak_mb for p in self.processes)


def label(pid: int) -> str:
    """What a process is, from its command line: a role process says its role only in its log, so the
    tail of the command line stands for it (the supervisor's role processes start in its order)."""
    try:
        return " ".join(psutil.Process(pid).cmdline())[-48:]
    except psutil.Error:
        return "?"


def measure(bootstrap: str, design: str, model: str, events: int, batch: int) -> MemoryRun:
    settings = fresh_settings(bootstrap, design, model)
    try:
        records = backlog(settings, model, events)
        with DesignProcess(command(design, settings, model, batch, "auto", 2), settings, sample_s=0.5) as proc:
            wait_ready(settings, groups(design, settings, 2), proc.alive)
            time.sleep(1.0)  # a sample after the last start-up step
            ready = proc.peaks()
            release(settings, records, lambda: None)
            tp = drain_backlog(settings, events, proc.alive, time.time(), max(180.0, events / 200))
            time.sleep(1.0)
            peaks = proc.peaks()
            labels = {pid: label(pid) for pid in peaks}
        rows = tuple(
            ProcessPeak(pid, labels[pid], ready.get(pid, 0) / MB, peak / MB, proc.replaced.get(pid, 0) / MB)
            for pid, peak in peaks.items()
        )
        return MemoryRun(design, tp.events_per_s, rows)
    finally:
        _delete_topics(settings)


def report(run: MemoryRun) -> str:
    lines = [f"{run.design}: peak {run.total_mb:,.0f} MB summed, {run.events_per_s:,.0f} events/s"]
    for p in run.processes:
        replaced = f" (exec'd from {p.replaced_mb:.1f} MB)" if p.replaced_mb else ""
        lines.append(f"  ready {p.ready_mb:7.1f} MB  peak {p.peak_mb:7.1f} MB{replaced}  {p.label}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", default="pipeline,raw_two_hop")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with broker(log) as bootstrap:
        for _ in range(args.runs):
            for design in designs:
                print(report(measure(bootstrap, design, args.model, args.events, args.batch_size)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
