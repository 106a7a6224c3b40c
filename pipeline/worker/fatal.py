"""The first error that must stop the worker, and who is told of it.

The writer and the readers run in threads of their own; when one of them cannot go on without risking
loss it trips the latch, and whoever subscribed (the Faust worker, which then stops as on SIGTERM; the
process's health) hears of it once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("pipeline.worker")


class FatalLatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[BaseException], None]] = []
        self.error: BaseException | None = None

    def subscribe(self, listener: Callable[[BaseException], None]) -> None:
        with self._lock:
            self._listeners.append(listener)
            error = self.error
        if error is not None:
            listener(error)

    def trip(self, exc: BaseException) -> None:
        """From any thread; only the first error counts."""
        with self._lock:
            if self.error is not None:
                return
            self.error = exc
            listeners = list(self._listeners)
        log.critical("stopping the worker: %s", exc)
        for listener in listeners:
            listener(exc)
