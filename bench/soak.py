"""`scripts/soak`: a real worker driven at half its measured maximum, its memory and descriptors watched.

The run: fresh topics; a backlog drained by the worker gives its maximum (events/s from the first output to
the last, as the benchmark measures it) unless ``--rate`` names one; then a generator in this process
offers half of it (``--fraction``) for ``--minutes`` (or ``--short`` seconds), and every ``--every``
(a minute; a sixth of the run in the short mode) each process of the worker is sampled: its resident set
(``VmRSS`` in ``/proc/<pid>/status``) and its open file descriptors (``/proc/<pid>/fd``). The processes
are the supervisor and one process per role; a worker without a supervisor is one process.

Broken, and a non-zero exit: a process's RSS, or the sum over the processes, more than ``--tolerance``
(10%) above its value at the first sample after the first interval (the baseline: start-up and the
backlog are behind it); a process with more descriptors than at the baseline; a worker process that
exited; a worker that had not answered everything offered 60 s after the generator stopped.

The broker: ``KAFKA_BOOTSTRAP`` when set; else the benchmark's own local broker, started and stopped here.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import psutil

from bench.designs import DesignProcess, command, groups
from bench.main import broker
from bench.measure import DesignFailed, Watermarks, drain_backlog, wait_ready
from bench.run import _delete_topics
from bench.workload import backlog, fresh_settings, input_producer, release, requests_for
from pipeline.config import ProcessPerRole, Settings
from pipeline.cpus import available_cpus
from pipeline.serde import Codecs
from pipeline.worker.layout import ROLES, process_groups

SEND_TICK_S = 0.01  # the generator sends what has come due at most this often (see bench.measure)
CATCH_UP_S = 60.0


@dataclass(frozen=True)
class Sample:
    """One reading of every worker process: seconds since the offered load began, and per process label
    its RSS in MB and its open descriptors."""

    at_s: float
    rss_mb: dict[str, float]
    fds: dict[str, int]

    @property
    def total_mb(self) -> float:
        return sum(self.rss_mb.values())


@dataclass
class Verdict:
    baseline: Sample
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def judge(samples: Sequence[Sample], every_s: float, tolerance: float) -> Verdict:
    """Compare every sample from the first one taken after ``every_s`` with that one: RSS (per process and
    summed) within ``tolerance`` above it, descriptors not above it, every process still there."""
    later = [s for s in samples if s.at_s >= every_s * 0.99]
    if len(later) < 2:
        raise ValueError(f"{len(samples)} samples: need two from {every_s:.0f} s on to judge a trend")
    base, rest = later[0], later[1:]
    verdict = Verdict(base)
    for sample in rest:
        when = f"at {sample.at_s:.0f} s"
        for name, mb in base.rss_mb.items():
            if name not in sample.rss_mb:
                verdict.problems.append(f"{when}: process {name} is gone")
                continue
            if sample.rss_mb[name] > mb * (1 + tolerance):
                verdict.problems.append(
                    f"{when}: {name} RSS {sample.rss_mb[name]:.1f} MB, more than {tolerance:.0%} above "
                    f"its {mb:.1f} MB at {base.at_s:.0f} s"
                )
            if sample.fds.get(name, 0) > base.fds[name]:
                verdict.problems.append(
                    f"{when}: {name} has {sample.fds[name]} descriptors open, {base.fds[name]} at {base.at_s:.0f} s"
                )
        if sample.total_mb > base.total_mb * (1 + tolerance):
            verdict.problems.append(
                f"{when}: all processes {sample.total_mb:.1f} MB, more than {tolerance:.0%} above "
                f"{base.total_mb:.1f} MB at {base.at_s:.0f} s"
            )
    return verdict


def table(samples: Sequence[Sample], unit: str = "s") -> str:
    """The samples as a Markdown table: one row per sample, RSS MB and descriptors per process."""
    names = list(samples[0].rss_mb)
    head = ["t " + unit, *(f"{n} MB" for n in names), "total MB", *(f"{n} fds" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    scale = 60.0 if unit == "min" else 1.0
    for s in samples:
        cells = [f"{s.at_s / scale:.1f}", *(f"{s.rss_mb.get(n, float('nan')):.1f}" for n in names)]
        cells += [f"{s.total_mb:.1f}", *(str(s.fds.get(n, "-")) for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def worker_processes(root: psutil.Process) -> dict[str, int]:
    """Label → pid for the worker's process tree: ``supervisor`` (or ``worker`` when it runs alone) and one
    per role, in the order the supervisor starts them (``pipeline.worker.layout.ROLES``)."""
    children = root.children(recursive=True)
    if not children:
        return {"worker": root.pid}
    found = {"supervisor": root.pid}
    roles = sorted(children, key=lambda p: (p.create_time(), p.pid))
    found.update({name: proc.pid for name, proc in zip(ROLES, roles, strict=False)})
    return found


def wait_for_processes(root: psutil.Process, layout: str, alive: Callable[[], bool]) -> dict[str, int]:
    """The worker's processes once every role's process has started (the layout decides how many)."""
    groups = process_groups(ROLES, cast(ProcessPerRole, layout), available_cpus())
    deadline = time.monotonic() + 60.0
    while True:
        pids = worker_processes(root)
        if len(groups) == 1 or all(role in pids for role in ROLES):
            return pids
        if time.monotonic() > deadline or not alive():
            raise DesignFailed(f"the worker's role processes did not start: {pids}")
        time.sleep(0.2)


def read_sample(pids: dict[str, int], at_s: float) -> Sample:
    rss: dict[str, float] = {}
    fds: dict[str, int] = {}
    for name, pid in pids.items():
        try:
            with open(f"/proc/{pid}/status") as status:
                kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            fds[name] = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration, ValueError):
            continue  # gone: judge() names it
        rss[name] = kb / 1024
    return Sample(at_s, rss, fds)


class Offer:
    """Offers ``rate`` events/s to the input topic from a pool of encoded requests, paced in ticks."""

    def __init__(self, settings: Settings, model: str, rate: float, pool: int = 5_000) -> None:
        codec = Codecs.from_settings(settings).request
        self._records = [(r["event_id"].encode(), codec.encode(r)) for r in requests_for(model, pool, seed=7)]
        self._producer = input_producer(settings)
        self._topic = settings.topics.input
        self.rate = rate
        self.sent = 0

    def run_until(self, stop_at: float, on_tick: Callable[[], None]) -> None:
        started = time.monotonic()
        pool = itertools.cycle(self._records)
        while (now := time.monotonic()) < stop_at:
            due = int((now - started) * self.rate)
            while self.sent < due:
                key, value = next(pool)
                try:
                    self._producer.produce(self._topic, value=value, key=key)
                    self.sent += 1
                except BufferError:
                    self._producer.poll(0.01)
            self._producer.poll(0)
            on_tick()
            time.sleep(SEND_TICK_S)
        if self._producer.flush(30) != 0:
            raise DesignFailed("the generator's records were not acknowledged")


def soak(args: argparse.Namespace, bootstrap: str, log: Callable[[str], None]) -> int:
    seconds = args.short if args.short else args.minutes * 60.0
    every = args.every or (seconds / 6 if args.short else 60.0)
    settings = fresh_settings(bootstrap, "soak", args.model)
    try:
        records = backlog(settings, args.model, args.max_events) if args.rate is None else []
        cmd = command("pipeline", settings, args.model, args.batch_size, args.process_per_role)
        with DesignProcess(cmd, settings) as proc:
            if args.rate is None:
                # the maximum: a backlog released at once into the started, ready worker
                wait_ready(settings, groups("pipeline", settings), proc.alive)
                release(settings, records, lambda: None)
                started = time.time()
                tp = drain_backlog(settings, args.max_events, proc.alive, started, timeout_s=180)
                maximum = tp.events_per_s
                log(f"maximum: {maximum:,.0f} events/s ({args.max_events:,} events in {tp.span_s:.2f} s)")
            else:
                maximum = args.rate
                log(f"maximum: {maximum:,.0f} events/s (given)")
            pids = wait_for_processes(psutil.Process(proc.proc.pid), args.process_per_role, proc.alive)
            log("processes: " + ", ".join(f"{n} {p}" for n, p in pids.items()))
            offer = Offer(settings, args.model, maximum * args.fraction)
            log(f"offering {offer.rate:,.0f} events/s for {seconds:.0f} s, a sample every {every:.0f} s")
            samples: list[Sample] = []
            t0 = time.monotonic()

            def tick() -> None:
                due = t0 + len(samples) * every
                if time.monotonic() >= due:
                    samples.append(read_sample(pids, time.monotonic() - t0))
                    if not proc.alive():
                        raise DesignFailed(f"the worker exited:\n{proc.output()}")

            offer.run_until(t0 + seconds + 0.5, tick)  # the last sample falls due at exactly `seconds`
            marks = Watermarks(settings, settings.topics.output)
            try:
                deadline = time.monotonic() + CATCH_UP_S
                while (done := marks.total()) < offer.sent + (args.max_events if args.rate is None else 0):
                    if time.monotonic() > deadline or not proc.alive():
                        break
                    time.sleep(0.5)
            finally:
                marks.close()
            expected = offer.sent + (args.max_events if args.rate is None else 0)
    finally:
        _delete_topics(settings)
    verdict = judge(samples, every, args.tolerance)
    if done < expected:
        verdict.problems.append(f"{done:,} of {expected:,} events answered {CATCH_UP_S:.0f} s after the offer stopped")
    print(table(samples, "s" if args.short else "min"))
    print(
        f"\noffered {offer.sent:,} events at {offer.rate:,.0f}/s (half of {maximum:,.0f}) for {seconds:.0f} s; "
        f"answered {done:,} of {expected:,}; baseline at {verdict.baseline.at_s:.0f} s: "
        f"{verdict.baseline.total_mb:.1f} MB in all; tolerance {args.tolerance:.0%}"
    )
    for problem in verdict.problems:
        print(f"BROKEN: {problem}")
    print("OK: RSS within tolerance and no descriptor growth" if verdict.ok else "FAILED")
    return 0 if verdict.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=10.0, help="how long the load runs (default 10)")
    length.add_argument("--short", type=float, metavar="SECONDS", help="the short mode: seconds, not minutes")
    parser.add_argument("--every", type=float, help="seconds between samples (default 60; short: a sixth)")
    parser.add_argument("--rate", type=float, help="the worker's maximum events/s (default: measured now)")
    parser.add_argument("--fraction", type=float, default=0.5, help="of the maximum, offered (default 0.5)")
    parser.add_argument("--max-events", type=int, help="the backlog that measures the maximum")
    parser.add_argument("--tolerance", type=float, default=0.10, help="RSS growth allowed (default 0.10)")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=Settings().batch_size)
    parser.add_argument("--process-per-role", default="auto", choices=("auto", "on", "off"))
    args = parser.parse_args(argv)
    if args.max_events is None:
        args.max_events = 20_000 if args.short else 100_000
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        with broker(log) as bootstrap:
            return soak(args, bootstrap, log)
    except DesignFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
