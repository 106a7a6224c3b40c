"""CPU seconds of a design's whole process tree, read from ``/proc``.

``/proc/PID/stat`` gives, in clock ticks, a process's user and system time (all its threads) and the
user and system time of its children that have exited and been waited for. Summed over every live
process of the tree, that is the CPU the tree has spent since it started, each tick counted once: a
live child counts for itself, a child that is gone counts in its parent. The bench reads it right before
a backlog becomes visible and right after its last output, so the difference is what the backlog cost.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import psutil

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def stat_ticks(stat: str) -> int:
    """utime + stime + cutime + cstime from the text of ``/proc/PID/stat``.

    The command name (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields
    are counted from the last ``)``: after it come state (field 3) and on, utime being field 14."""
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): field k is fields[k - 3]
    return sum(int(fields[k - 3]) for k in (14, 15, 16, 17))


def process_ticks(pid: int) -> int | None:
    """The process's ticks (see :func:`stat_ticks`), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return stat_ticks(f.read())
    except (OSError, ValueError, IndexError):
        return None


def host_busy_seconds() -> float:
    """CPU seconds the host's cores have spent busy since boot: ``/proc/stat``'s first line, every column
    but idle and iowait (guest time is already in user). Over a drain, this less the design's own is what
    the rest of the host spent meanwhile: the broker, mostly, on a host where the broker shares the cores."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds spent by ``root`` and every live descendant (with their reaped children)."""
    return sum(tree_cpu_by_process(root).values())


def tree_cpu_by_process(root: int) -> dict[int, float]:
    """Each live process of the tree's CPU seconds (its reaped children's included), by pid, ``root``
    first, then in start order. Over a drain, the busiest process says whether a design is bound by one
    process's core: a Python process runs its own code on one core at a time, whatever the host has to
    spare."""
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        children = []
    pids = [root] + [c.pid for c in sorted(children, key=_started)]
    return {pid: t / TICKS_PER_S for pid in pids if (t := process_ticks(pid)) is not None}


def _started(proc: psutil.Process) -> tuple[float, int]:
    try:
        return proc.create_time(), proc.pid
    except psutil.Error:
        return float("inf"), proc.pid


@dataclass(frozen=True)
class CpuSplit:
    """The cores the design under test runs on, and those the load (the latency generator and reader) runs
    on: on a host with cores to spare, the load then takes nothing from the design, and its latency is the
    design's own."""

    design: frozenset[int]
    load: frozenset[int]


def split_cpus(load: int | None) -> CpuSplit | None:
    """``load`` cores (the last ones) for the load, the rest for designs. None (the default): one core where
    the host has four or more, none below that, where a design on one core would say little of its speed on
    two. 0: no split."""
    cpus = sorted(os.sched_getaffinity(0))
    n = (1 if len(cpus) >= 4 else 0) if load is None else load
    if n <= 0:
        return None
    if n >= len(cpus):
        raise ValueError(f"{n} cores for the load leave none of this host's {len(cpus)} for the designs")
    return CpuSplit(frozenset(cpus[:-n]), frozenset(cpus[-n:]))


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of ``pid`` onto ``cpus``: affinity is per thread, and a client's threads already run."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)
