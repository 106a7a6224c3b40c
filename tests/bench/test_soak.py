"""The soak (`scripts/soak`): its verdict on samples that hold and on samples that break each rule (unit),
and its short mode end to end on the suite's broker: a real worker at half its measured maximum, every
process sampled, a zero exit (marked ``e2e``: it runs a real worker, in under a minute)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import Sample, judge, table

REPO = Path(__file__).resolve().parents[2]
PROCS = ("supervisor", "input", "inference")


def _sample(at_s: float, rss: float = 100.0, fds: int = 40, **changes: tuple[float, int]) -> Sample:
    values = {name: changes.get(name, (rss, fds)) for name in PROCS}
    return Sample(at_s, {n: v[0] for n, v in values.items()}, {n: v[1] for n, v in values.items()})


def test_steady_samples_pass_and_the_baseline_is_after_the_first_interval() -> None:
    samples = [_sample(0, rss=50.0), _sample(60), _sample(120, inference=(109.0, 40)), _sample(180)]
    verdict = judge(samples, every_s=60, tolerance=0.10)
    assert verdict.ok, verdict.problems
    assert verdict.baseline.at_s == 60  # start-up's growth (50 -> 100 MB) is not judged


def test_rss_growth_past_the_tolerance_breaks_it() -> None:
    samples = [_sample(0), _sample(60), _sample(120, inference=(111.0, 40))]
    verdict = judge(samples, every_s=60, tolerance=0.10)
    assert not verdict.ok
    assert any("inference RSS 111.0 MB" in p for p in verdict.problems), verdict.problems


def test_the_sum_over_the_processes_is_judged_too() -> None:
    grown = {name: (109.0, 40) for name in PROCS}  # each within 10%, and so is the sum: 327 <= 330
    assert judge([_sample(0), _sample(60), _sample(120, **grown)], 60, 0.10).ok
    assert not judge([_sample(0), _sample(60), _sample(120, **grown)], 60, 0.08).ok


def test_one_more_descriptor_breaks_it() -> None:
    verdict = judge([_sample(0), _sample(60), _sample(120, input=(100.0, 41))], 60, 0.10)
    assert [p for p in verdict.problems if "descriptors" in p], verdict.problems


def test_a_process_that_is_gone_breaks_it() -> None:
    gone = Sample(120, {"supervisor": 100.0, "input": 100.0}, {"supervisor": 40, "input": 40})
    verdict = judge([_sample(0), _sample(60), gone], 60, 0.10)
    assert any("inference is gone" in p for p in verdict.problems), verdict.problems


def test_too_few_samples_to_judge_is_an_error() -> None:
    with pytest.raises(ValueError):
        judge([_sample(0), _sample(60)], 60, 0.10)


def test_the_table_has_a_row_per_sample_and_a_column_per_process() -> None:
    text = table([_sample(0), _sample(60)], unit="min")
    lines = text.splitlines()
    assert len(lines) == 4
    assert all(f"{name} MB" in lines[0] and f"{name} fds" in lines[0] for name in PROCS)
    assert lines[3].startswith("| 1.0 |")


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_short_soak_passes_on_a_real_worker(kafka_bootstrap: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--short", "20", "--process-per-role", "on"],
        cwd=REPO,
        env={**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-3000:]}"
    header = done.stdout.splitlines()[0]
    assert all(f"{name} MB" in header for name in PROCS), header  # the supervisor and one process per role
    rows = [line for line in done.stdout.splitlines() if re.match(r"\| \d", line)]
    assert len(rows) == 7, done.stdout  # a sample every 20/6 s, from 0 to 20 s
    assert "OK: RSS within tolerance" in done.stdout
