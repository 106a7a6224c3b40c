"""A live status line for a running worker (rich): events/s in and out, lag, errors, dead letters,
batch size and provider, computed from the same metrics Prometheus scrapes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client.metrics import MetricWrapperBase
from rich.console import Console
from rich.live import Live
from rich.text import Text

from pipeline.observability.metrics import BATCH_SIZE, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED, EVENTS_FAILED, RESULTS


def metric_total(metric: MetricWrapperBase, suffix: str = "_total", **match: str) -> float:
    """Sum of a metric's samples whose name ends with ``suffix`` and whose labels include ``match``."""
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix) and all(sample.labels.get(k) == v for k, v in match.items()):
                total += sample.value
    return total


class StatusLine(threading.Thread):
    def __init__(
        self,
        provider: Callable[[], str],
        lag: Callable[[], int | None],
        console: Console | None = None,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__(name="status-line", daemon=True)
        self.provider = provider
        self.lag = lag
        self.console = console or Console(stderr=True)
        self.interval_s = interval_s
        self._stop_event = threading.Event()

    def render(self, rate_in: float, rate_out: float, batch: float) -> Text:
        lag = self.lag()
        errors = metric_total(EVENTS_FAILED)
        dead = metric_total(EVENTS_DEAD_LETTERED)
        line = Text()
        line.append(" in ", style="bold")
        line.append(f"{rate_in:8.0f}/s")
        line.append("  out ", style="bold")
        line.append(f"{rate_out:8.0f}/s")
        line.append("  lag ", style="bold")
        line.append("?" if lag is None else f"{lag}")
        line.append("  errors ", style="bold")
        line.append(f"{errors:.0f}", style="red" if errors else "")
        line.append("  dead letters ", style="bold")
        line.append(f"{dead:.0f}", style="red" if dead else "")
        line.append("  batch ", style="bold")
        line.append(f"{batch:.1f}")
        line.append("  provider ", style="bold")
        line.append(self.provider())
        return line

    def run(self) -> None:
        last = (time.monotonic(), metric_total(EVENTS_CONSUMED, role="input"), metric_total(RESULTS))
        last_batch = (
            metric_total(BATCH_SIZE, "_sum", role="inference"),
            metric_total(BATCH_SIZE, "_count", role="inference"),
        )
        with Live(self.render(0, 0, 0), console=self.console, refresh_per_second=4, transient=False) as live:
            while not self._stop_event.wait(self.interval_s):
                now = (time.monotonic(), metric_total(EVENTS_CONSUMED, role="input"), metric_total(RESULTS))
                batch = (
                    metric_total(BATCH_SIZE, "_sum", role="inference"),
                    metric_total(BATCH_SIZE, "_count", role="inference"),
                )
                elapsed = max(1e-6, now[0] - last[0])
                batches = batch[1] - last_batch[1]
                live.update(
                    self.render(
                        (now[1] - last[1]) / elapsed,
                        (now[2] - last[2]) / elapsed,
                        (batch[0] - last_batch[0]) / batches if batches else 0.0,
                    )
                )
                last, last_batch = now, batch

    def stop(self) -> None:
        self._stop_event.set()
