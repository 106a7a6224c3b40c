"""Unit: which designs a bench plan drains in legs (``bench.run.legs_for``)."""

from __future__ import annotations

from bench.main import PLANS
from bench.run import legs_for


def test_the_full_run_drains_exactly_once_in_as_many_legs_as_the_pipeline() -> None:
    phase, designs = PLANS["full"]["tiny"]
    assert phase.legs > 1
    assert legs_for("pipeline", phase) == legs_for("pipeline_eos", phase) == phase.legs
    assert {d: legs_for(d, phase) for d in designs if d not in ("pipeline", "pipeline_eos")} == {
        d: 1 for d in designs if d not in ("pipeline", "pipeline_eos")
    }


def test_quick_mode_drains_one_backlog_per_design() -> None:
    for phase, designs in PLANS["quick"].values():
        assert all(legs_for(d, phase) == 1 for d in designs)
