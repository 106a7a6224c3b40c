"""How many processes a worker runs, and which roles each one holds.

Both roles in one process share one GIL: with a small model the second hop (consume, decode and produce
again through the inference topic) costs the inference role a third of its throughput (measured in
``bench/RESULTS.md``). With two or more CPUs the worker therefore runs each role in
a process of its own by default; with one CPU, or when asked, it keeps them together.
"""

from __future__ import annotations

from pipeline.config import ProcessPerRole

ROLES = ("input", "inference")


def process_groups(roles: tuple[str, ...], mode: ProcessPerRole, cpus: int) -> list[tuple[str, ...]]:
    """The roles of each process to run: one entry means one process (no supervisor)."""
    split = mode == "on" or (mode == "auto" and cpus >= 2)
    if len(roles) < 2 or not split:
        return [roles]
    return [(role,) for role in roles]
