"""A circuit breaker around the model: when the model itself fails, events wait in Kafka instead of
flooding the dead-letter topic.

A model batch that fails as a whole, while the model does not answer a known-good probe either, is a model
failure (not the events'): the batch is read again later. After ``open_after`` such failures in a row the
breaker opens: the inference reader holds its partitions (nothing is read, nothing is dead-lettered, the
worker is not ready), and a probe runs after a backoff that grows while the model stays down. The first
probe the model answers closes the breaker and reading resumes where it stopped.

The probe runs in a thread of its own that exists only while the breaker is open, so a healthy worker
has no extra wake-ups.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger("pipeline.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        probe: Callable[[], bool],
        *,
        open_after: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self._probe = probe
        self.open_after = max(1, open_after)
        self.backoff_s = backoff_s
        self.max_backoff_s = max(backoff_s, max_backoff_s)
        self._on_change = on_change
        self._lock = threading.Lock()
        self._failures = 0
        self._state = BreakerState.CLOSED
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None
        self.opened = 0  # how many times it opened, for tests and logs

    @property
    def state(self) -> BreakerState:
        return self._state

    def is_open(self) -> bool:
        return self._state is BreakerState.OPEN

    def success(self) -> None:
        """A model batch answered (one success among failures is enough: the model works)."""
        if self._failures:
            with self._lock:
                self._failures = 0

    def failure(self) -> None:
        """A model batch failed as a whole and the model did not answer the probe."""
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.OPEN or self._failures < self.open_after:
                return
            self._state = BreakerState.OPEN
            self.opened += 1
            self._prober = threading.Thread(target=self._probe_until_closed, name=f"breaker-{self.name}", daemon=True)
        log.error(
            "model %s: circuit open after %d failed batches in a row; holding its partitions and probing",
            self.name,
            self._failures,
        )
        self._changed(BreakerState.OPEN)
        self._prober.start()

    def close(self) -> None:
        """Stop probing (the worker is stopping)."""
        self._stop.set()

    def _probe_until_closed(self) -> None:
        delay = self.backoff_s
        attempt = 0
        while not self._stop.wait(delay):
            attempt += 1
            try:
                answered = self._probe()
            except Exception as exc:  # a probe that raises is a probe that failed
                log.debug("model %s: probe raised %s", self.name, exc)
                answered = False
            if answered:
                with self._lock:
                    self._state = BreakerState.CLOSED
                    self._failures = 0
                log.warning("model %s: probe %d answered; circuit closed, reading resumes", self.name, attempt)
                self._changed(BreakerState.CLOSED)
                return
            delay = min(self.max_backoff_s, delay * 2)
            log.warning("model %s: probe %d failed; next in %.1f s", self.name, attempt, delay)

    def _changed(self, state: BreakerState) -> None:
        if self._on_change is not None:
            self._on_change(state)
