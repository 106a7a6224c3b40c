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
"""

from __future__ import annotations

import gc
import logging

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
