"""Unit: the phase each design runs in a bench plan (``bench.main.planned``): its legs and its windows."""

from __future__ import annotations

from bench.main import JUDGED, LEGGED, PLANS, planned


def test_the_full_run_drains_exactly_once_in_as_many_legs_as_the_pipeline() -> None:
    phase, designs = PLANS["full"]["tiny"]
    assert phase.legs > 1 and {"pipeline", "pipeline_eos"} <= set(LEGGED)
    legs = {d: planned(d, phase, phase.seconds).legs for d in designs}
    assert legs["pipeline"] == legs["pipeline_eos"] == phase.legs
    assert {d: n for d, n in legs.items() if d not in LEGGED} == {d: 1 for d in designs if d not in LEGGED}


def test_only_the_judged_designs_get_several_latency_windows() -> None:
    phase, designs = PLANS["full"]["tiny"]
    assert phase.windows > 1
    windows = {d: planned(d, phase, phase.seconds).windows for d in designs}
    assert {d for d, n in windows.items() if n > 1} == set(JUDGED) & set(designs)


def test_a_planned_phase_keeps_the_backlog_and_takes_the_rates_and_reference_given() -> None:
    phase, _ = PLANS["full"]["tiny"]
    staged = planned("raw_loop", phase, 0.0, (10.0, 20.0), 1234.0)
    assert (staged.events, staged.rate, staged.seconds) == (phase.events, phase.rate, 0.0)
    assert (staged.rates, staged.reference_per_s, staged.curve) == ((10.0, 20.0), 1234.0, ())


def test_quick_mode_drains_one_backlog_per_design() -> None:
    for phase, designs in PLANS["quick"].values():
        assert all(planned(d, phase, phase.seconds).legs == 1 for d in designs)
