from __future__ import annotations

import pytest

from pipeline.cpus import available_cpus
from pipeline.worker.layout import process_groups

BOTH = ("input", "inference")


@pytest.mark.parametrize(
    ("roles", "mode", "cpus", "expected"),
    [
        (BOTH, "auto", 2, [("input",), ("inference",)]),
        (BOTH, "auto", 16, [("input",), ("inference",)]),
        (BOTH, "auto", 1, [BOTH]),  # one CPU: a second process would only add a hop
        (BOTH, "on", 1, [("input",), ("inference",)]),
        (BOTH, "off", 8, [BOTH]),
        (("inference",), "on", 8, [("inference",)]),  # one role is one process, never supervised
        (("input",), "auto", 8, [("input",)]),
    ],
)
def test_each_role_gets_a_process_when_there_are_cpus_for_it(
    roles: tuple[str, ...], mode: str, cpus: int, expected: list[tuple[str, ...]]
) -> None:
    assert process_groups(roles, mode, cpus) == expected  # type: ignore[arg-type]


def test_available_cpus_counts_the_affinity_mask() -> None:
    import os

    cpus = available_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert cpus == len(os.sched_getaffinity(0))
