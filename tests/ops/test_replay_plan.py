"""Replay policy without a broker: identity, recorded range, headers, partitions, filters."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.ops.filters import FilterError
from pipeline.ops.ranges import PartitionRange
from pipeline.ops.replay_plan import (
    H_ID,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    ReplayPlan,
    keep_partitions,
    parse_replay_filters,
    range_from_metadata,
    record_resolver,
    remaining,
    replay_headers,
    replay_id_for,
)


def test_replay_id_is_stable_for_the_same_options_and_differs_otherwise() -> None:
    a = replay_id_for("s", "t", "0:1", None, ["model=tiny", "key=a"])
    assert a == replay_id_for("s", "t", "0:1", None, ["key=a", "model=tiny"])
    assert a != replay_id_for("s", "t", "0:2", None, ["model=tiny", "key=a"])
    assert a != replay_id_for("s", "u", "0:1", None, ["model=tiny", "key=a"])


def test_the_plan_round_trips_through_commit_metadata_and_ignores_other_replays() -> None:
    plan = ReplayPlan("abc", "s", "t", (PartitionRange(0, 5, 90), PartitionRange(1, 0, 0)))
    assert range_from_metadata("abc", 0, plan.metadata(plan.ranges[0])) == PartitionRange(0, 5, 90)
    assert range_from_metadata("abc", 1, plan.metadata(plan.ranges[1])) == PartitionRange(1, 0, 0)
    assert range_from_metadata("other", 0, plan.metadata(plan.ranges[0])) is None
    assert range_from_metadata("abc", 0, "") is None
    assert range_from_metadata("abc", 0, "not json") is None


def test_remaining_starts_at_the_committed_position_and_never_passes_the_end() -> None:
    planned = [PartitionRange(0, 10, 100), PartitionRange(1, 0, 50), PartitionRange(2, 0, 20)]
    left = remaining(planned, {0: 40, 1: 80})
    assert left == [PartitionRange(0, 40, 100), PartitionRange(1, 50, 50), PartitionRange(2, 0, 20)]
    assert sum(r.size for r in left) == 60 + 0 + 20


def test_replay_headers_keep_the_original_and_replace_an_earlier_replays() -> None:
    first = replay_headers([("trace", b"t1")], "r1", "src", 3, 42)
    assert first[0] == ("trace", b"t1")
    assert dict(first)[H_ID] == b"r1" and dict(first)[H_TOPIC] == b"src"
    assert dict(first)[H_PARTITION] == b"3" and dict(first)[H_OFFSET] == b"42"
    second = replay_headers(first, "r2", "mid", 0, 7)
    assert [k for k, _ in second].count(H_ID) == 1 and dict(second)[H_ID] == b"r2"
    assert dict(second)["trace"] == b"t1"


def test_partitions_are_kept_only_where_the_target_has_room() -> None:
    assert keep_partitions(4, 4) and keep_partitions(2, 6)
    assert not keep_partitions(6, 2)


def _resolver(datum: tuple[str, dict[str, Any]] | None, calls: list[int]) -> Any:
    def decode() -> tuple[str, dict[str, Any]] | None:
        calls.append(1)
        return datum

    return record_resolver(b"k1", 1, [("tenant-h", b"acme")], decode)


def test_filters_match_keys_headers_and_event_fields_decoding_once() -> None:
    calls: list[int] = []
    resolve = _resolver(("request", {"model": {"name": "tiny"}, "priority": "HIGH"}), calls)
    assert parse_replay_filters(["key=k1,k2", "header.tenant-h=acme"]).keeps(resolve)
    assert calls == []  # key and headers need no decoding
    assert parse_replay_filters(["model=tiny", "type=request", "priority!=LOW"]).keeps(resolve)
    assert not parse_replay_filters(["model=minilm-l6"]).keeps(resolve)
    assert len(calls) == 1
    undecodable = _resolver(None, [])
    assert not parse_replay_filters(["model=tiny"]).keeps(undecodable)
    assert parse_replay_filters(["model!=tiny"]).keeps(undecodable)


@pytest.mark.parametrize("bad", ["model", "modle=tiny", "key=", "=x"])
def test_a_filter_that_cannot_be_read_is_refused_before_any_io(bad: str) -> None:
    with pytest.raises(FilterError):
        parse_replay_filters([bad])
