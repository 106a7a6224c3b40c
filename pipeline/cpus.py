"""The CPUs this process may use: what sizes the model's intra-op threads and the worker's process layout."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, as container CPU sets narrow it (unlike
    ``os.cpu_count``, which counts the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
