from __future__ import annotations

import pytest

from pipeline.ops.ranges import PartitionRange, plan_range
from pipeline.ops.timespec import Position, SpecError, parse_offsets, parse_position, parse_time

NOW = 1_700_000_000_000


def test_times() -> None:
    assert parse_time("-15m", NOW) == NOW - 15 * 60_000
    assert parse_time("-2h", NOW) == NOW - 2 * 3_600_000
    assert parse_time("now", NOW) == NOW
    assert parse_time("2023-11-14T22:13:20Z") == NOW
    assert parse_time("2023-11-14T22:13:20") == NOW  # naive is UTC
    assert parse_time("2023-11-15T00:13:20+02:00") == NOW
    with pytest.raises(SpecError, match="cannot read time"):
        parse_time("yesterday")


def test_offsets_and_positions() -> None:
    assert parse_offsets("0:100, 1:250") == {0: 100, 1: 250}
    with pytest.raises(SpecError, match="twice"):
        parse_offsets("0:1,0:2")
    with pytest.raises(SpecError):
        parse_offsets("0-1")
    assert parse_position("0:5") == Position(offsets={0: 5})
    assert parse_position("-1h", NOW) == Position(time_ms=NOW - 3_600_000)


def test_plan_range_clamps_to_the_log_and_drops_empty_partitions() -> None:
    marks = {0: (10, 20), 1: (0, 5), 2: (3, 3)}
    assert plan_range({0: 0, 1: 4}, {0: 15, 1: 99}, marks) == [PartitionRange(0, 10, 15), PartitionRange(1, 4, 5)]
