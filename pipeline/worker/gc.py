"""The worker's garbage-collector settings.

Reference counting frees almost everything the hot path allocates; the cyclic collector only has to find
cycles. With CPython's defaults (a young collection every 700 net allocations) a busy worker ran some
2,000 young and 15 full collections per 150,000 events, and every full collection walked the whole heap
(Faust, the model, the Kafka clients, the batches in flight) while holding the GIL: pauses of up to
90 ms and a fifth of the worker's CPU per event (numbers in ``bench/RESULTS.md``).
Two standard remedies, both cheap to undo:

- a larger young-generation threshold: fewer, still short, young collections;
- freezing the heap built at startup (``gc.freeze``), so that later collections skip the objects that
  live as long as the process.

And what the collector and reference counting free goes back to the kernel (:class:`HeapTrimmer`).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import threading
from collections.abc import Callable
from typing import cast

log = logging.getLogger("pipeline.gc")


def set_young_threshold(gen0: int) -> tuple[int, int, int]:
    """Collect the young generation after ``gen0`` net allocations (0: keep Python's own); returns the
    thresholds in force before."""
    before = gc.get_threshold()
    if gen0 > 0:
        gc.set_threshold(gen0, before[1], before[2])
    return before


def freeze_startup_heap() -> int:
    """Collect once, then move every surviving object out of the collector's reach; returns how many.

    Called when the worker is built (model loaded, app wired): what exists then lives as long as the
    process, so walking it again at each full collection is pure cost.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("froze %d startup objects out of the cyclic collector", frozen)
    return frozen


TRIM_INTERVAL_S = 30.0  # rare: a trim releases pages that a busy process would fault in again


class HeapTrimmer:
    """Hands the C heap's free pages back to the kernel every ``interval_s`` (glibc's ``malloc_trim``).

    A backlog drives a role's heaps up (record buffers, the Kafka clients' threads, the batches in
    flight); once they are freed, glibc keeps the pages for reuse, so the process's resident set stayed at
    its high-water mark long after the load had gone (some 85 MB over a worker's processes after a
    150,000-event backlog of the tiny model, measured in ``bench/README.md``). A call walks the free
    lists, off the event loop, every 30 s: pages handed back while a backlog runs are faulted in again at
    once, and at one call every 5 s the backlog's throughput looked lower. Where the C library has no
    ``malloc_trim`` (not glibc), it does nothing.
    """

    def __init__(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HeapTrimmer:
        trim = _malloc_trim()
        if trim is None or self.interval_s <= 0:
            return self

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                trim(0)

        self._thread = threading.Thread(target=loop, name="heap-trimmer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return cast(Callable[[int], int], ctypes.CDLL(None).malloc_trim)
    except (OSError, AttributeError):
        return None
