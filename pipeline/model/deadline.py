"""Deadlines for ONNX Runtime runs: one watchdog thread that sets ``RunOptions.terminate`` on a run that is
still going at its deadline.

ONNX Runtime checks the flag between kernels (and between a Loop's iterations) and then fails the run with
"Exiting due to terminate flag being set to true"; the session stays usable. The flag has to be set from
another thread, because the thread that called ``run`` is inside it.

One thread per runner, not a ``threading.Timer`` per run: a timer starts a thread for every batch, which
costs more than a small model's whole run. The watchdog sleeps until the nearest deadline of the runs it
watches and is woken only when a run with an earlier deadline arrives (when it was idle, or a shorter
deadline), so back-to-back batches cost it one wake-up per deadline period, not one per batch.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol


class Terminable(Protocol):
    """What the watchdog stops: ``onnxruntime.RunOptions``."""

    terminate: bool


@dataclass(eq=False, slots=True)
class Watch:
    """One watched run; ``terminated`` says whether the watchdog set its flag."""

    options: Terminable
    deadline_at: float  # time.monotonic()
    terminated: bool = False


class Watchdog:
    """Terminates watched runs at their deadlines. Its thread starts with the first watch and is a daemon,
    so a runner that is never closed does not hold the interpreter at exit."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._watches: set[Watch] = set()
        self._wakes_at = math.inf  # when the thread wakes by itself next; inf while it waits for work
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, options: Terminable, deadline_at: float) -> Watch:
        """Start watching a run that is about to start; call :meth:`release` when it has returned."""
        watch = Watch(options, deadline_at)
        with self._cond:
            self._watches.add(watch)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name=f"deadline-{self._name}", daemon=True)
                self._thread.start()
            elif deadline_at < self._wakes_at:
                self._cond.notify()
        return watch

    def release(self, watch: Watch) -> bool:
        """Stop watching (again is harmless); whether the run was terminated (then its error is the
        deadline's, whatever it says)."""
        with self._cond:
            self._watches.discard(watch)
            return watch.terminated

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                nearest = math.inf
                for watch in self._watches:
                    if watch.terminated:
                        continue
                    if watch.deadline_at <= now:
                        watch.options.terminate = True
                        watch.terminated = True
                    else:
                        nearest = min(nearest, watch.deadline_at)
                self._wakes_at = nearest
                self._cond.wait(None if nearest == math.inf else nearest - now)
