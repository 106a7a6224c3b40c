"""`python -m bench.memory`: its report sums the processes' own peaks and shows each (unit tier)."""

from __future__ import annotations

from bench.memory import MemoryRun, ProcessPeak, report


def test_the_report_sums_each_process_peak_and_lists_every_process() -> None:
    run = MemoryRun(
        "pipeline",
        12_345.6,
        (
            ProcessPeak(1, "supervisor", 50.0, 50.5),
            ProcessPeak(2, "input", 75.0, 120.0),
            ProcessPeak(3, "inf", 80, 180),
        ),
    )
    assert run.total_mb == 350.5
    lines = report(run).splitlines()
    assert lines[0] == "pipeline: peak 350 MB summed, 12,346 events/s"
    assert len(lines) == 4
    assert "ready    75.0 MB  peak   120.0 MB  input" in lines[2]
