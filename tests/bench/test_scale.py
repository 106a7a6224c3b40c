"""The sizing table: each worker count against one worker, failures shown as such."""

from __future__ import annotations

from bench.scale import ScalePoint, mean_point, scale_markdown


def test_the_scale_table_compares_each_count_with_one_worker() -> None:
    points = [
        ScalePoint("tiny", 1, 6000, events_per_s=10_000, cpu_s=1.2, cpu_s_per_1000=0.2, peak_rss_mb=500),
        ScalePoint("tiny", 2, 6000, events_per_s=15_000, cpu_s=1.5, cpu_s_per_1000=0.25, peak_rss_mb=1000),
        ScalePoint("tiny", 3, 6000, error="not ready"),
    ]
    table = scale_markdown(points, "header")
    rows = [line for line in table.splitlines() if line.startswith("| tiny")]
    assert rows[0].split("|")[6].strip() == "1.00"
    assert rows[1].split("|")[6].strip() == "1.50" and "0.250" in rows[1]
    assert "failed" in rows[2]


def test_a_counts_legs_make_one_point_and_a_failed_leg_fails_it() -> None:
    a = ScalePoint("tiny", 2, 100, events_per_s=9_000, cpu_s=1.0, cpu_s_per_1000=0.1, peak_rss_mb=600)
    b = ScalePoint("tiny", 2, 100, events_per_s=11_000, cpu_s=3.0, cpu_s_per_1000=0.3, peak_rss_mb=700)
    point = mean_point("tiny", 2, 100, [a, b])
    assert (point.events_per_s, point.cpu_s, point.peak_rss_mb) == (10_000, 2.0, 700)
    assert abs(point.cpu_s_per_1000 - 0.2) < 1e-9 and point.legs_events_per_s == [9_000, 11_000]
    assert "| 10,000 | 9,000, 11,000 |" in scale_markdown([point], "header")
    assert mean_point("tiny", 2, 100, [a, ScalePoint("tiny", 2, 100, error="not ready")]).error == "not ready"
