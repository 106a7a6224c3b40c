"""The sizing table: each worker count against one worker, failures shown as such."""

from __future__ import annotations

from bench.scale import ScalePoint, scale_markdown


def test_the_scale_table_compares_each_count_with_one_worker() -> None:
    points = [
        ScalePoint("tiny", 1, 6000, events_per_s=10_000, cpu_s=1.2, cpu_s_per_1000=0.2, peak_rss_mb=500),
        ScalePoint("tiny", 2, 6000, events_per_s=15_000, cpu_s=1.5, cpu_s_per_1000=0.25, peak_rss_mb=1000),
        ScalePoint("tiny", 3, 6000, error="not ready"),
    ]
    table = scale_markdown(points, "header")
    rows = [line for line in table.splitlines() if line.startswith("| tiny")]
    assert rows[0].split("|")[5].strip() == "1.00"
    assert rows[1].split("|")[5].strip() == "1.50" and "0.250" in rows[1]
    assert "failed" in rows[2]
