"""A live status line for a running worker (rich): events/s in and out, lag, errors, dead letters,
batch size and provider, computed from the same metrics Prometheus scrapes (so it shows every process of a
worker whose roles run as processes of their own)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import Metric
from rich.console import Console
from rich.live import Live
from rich.text import Text

Collect = Callable[[], Iterable[Metric]]


def sample_total(families: Iterable[Metric], sample_name: str, **match: str) -> float:
    """Sum of the samples called ``sample_name`` whose labels include ``match``."""
    return sum(
        s.value
        for family in families
        for s in family.samples
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in match.items())
    )


def sample_label(families: Iterable[Metric], sample_name: str, label: str) -> str | None:
    for family in families:
        for s in family.samples:
            if s.name == sample_name and s.value and label in s.labels:
                return s.labels[label]
    return None


class StatusLine(threading.Thread):
    def __init__(self, collect: Collect, console: Console | None = None, interval_s: float = 1.0) -> None:
        super().__init__(name="status-line", daemon=True)
        self.collect = collect
        self.console = console or Console(stderr=True)
        self.interval_s = interval_s
        self._stop_event = threading.Event()

    def _counts(self) -> tuple[list[Metric], tuple[float, float, float, float, float]]:
        families = list(self.collect())
        counts = (
            time.monotonic(),
            sample_total(families, "pipeline_events_consumed_total", role="input"),
            sample_total(families, "pipeline_results_total"),
            sample_total(families, "pipeline_batch_size_sum", role="inference"),
            sample_total(families, "pipeline_batch_size_count", role="inference"),
        )
        return families, counts

    def render(self, families: list[Metric], rate_in: float, rate_out: float, batch: float) -> Text:
        lag = sample_total(families, "pipeline_consumer_lag")
        errors = sample_total(families, "pipeline_events_failed_total")
        dead = sample_total(families, "pipeline_events_dead_lettered_total")
        line = Text()
        line.append(" in ", style="bold")
        line.append(f"{rate_in:8.0f}/s")
        line.append("  out ", style="bold")
        line.append(f"{rate_out:8.0f}/s")
        line.append("  lag ", style="bold")
        line.append(f"{lag:.0f}")
        line.append("  errors ", style="bold")
        line.append(f"{errors:.0f}", style="red" if errors else "")
        line.append("  dead letters ", style="bold")
        line.append(f"{dead:.0f}", style="red" if dead else "")
        line.append("  batch ", style="bold")
        line.append(f"{batch:.1f}")
        line.append("  provider ", style="bold")
        line.append(sample_label(families, "pipeline_model_info", "provider") or "-")
        return line

    def run(self) -> None:
        families, last = self._counts()
        with Live(self.render(families, 0, 0, 0), console=self.console, refresh_per_second=4) as live:
            while not self._stop_event.wait(self.interval_s):
                families, now = self._counts()
                elapsed = max(1e-6, now[0] - last[0])
                batches = now[4] - last[4]
                live.update(
                    self.render(
                        families,
                        (now[1] - last[1]) / elapsed,
                        (now[2] - last[2]) / elapsed,
                        (now[3] - last[3]) / batches if batches else 0.0,
                    )
                )
                last = now

    def stop(self) -> None:
        self._stop_event.set()
