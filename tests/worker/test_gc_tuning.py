"""The worker's collector settings: the young threshold is set and can be undone, freezing takes the
startup heap out of later collections, and a negative threshold is a configuration error; the heap
trimmer hands freed pages back on its interval and stops."""

from __future__ import annotations

import gc
import platform
import threading
from collections.abc import Iterator

import pytest

from pipeline.config import ConfigError, load_settings
from pipeline.worker import gc as worker_gc
from pipeline.worker.gc import HeapTrimmer, freeze_startup_heap, set_young_threshold


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_young_threshold_is_set_and_older_ones_kept(restore_gc: None) -> None:
    g1, g2 = gc.get_threshold()[1:]
    before = set_young_threshold(12_345)
    assert gc.get_threshold() == (12_345, g1, g2)
    assert before[1:] == (g1, g2)


def test_zero_keeps_pythons_threshold(restore_gc: None) -> None:
    current = gc.get_threshold()
    assert set_young_threshold(0) == current
    assert gc.get_threshold() == current


def test_frozen_objects_leave_the_collectors_generations(restore_gc: None) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: tracked by the collector

    keep = [Node() for _ in range(1000)]
    frozen = freeze_startup_heap()
    assert frozen >= len(keep)
    assert gc.get_freeze_count() == frozen
    # No generation holds them any more, so no collection walks them; they are still alive and tracked.
    ids = {id(n) for n in keep}
    assert not any(id(o) in ids for o in gc.get_objects())
    assert all(gc.is_tracked(n) for n in keep)
    later = [Node() for _ in range(10)]
    assert {id(n) for n in later} <= {id(o) for o in gc.get_objects()}


def test_threshold_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_GC_GEN0_THRESHOLD", "0")
    assert load_settings().gc_gen0_threshold == 0
    monkeypatch.setenv("PIPELINE_GC_GEN0_THRESHOLD", "-1")
    with pytest.raises(ConfigError):
        load_settings()


def test_heap_trimmer_trims_on_its_interval_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    called = threading.Event()

    def trim(pad: int) -> int:
        calls.append(pad)
        if len(calls) >= 3:
            called.set()
        return 1

    monkeypatch.setattr(worker_gc, "_malloc_trim", lambda: trim)
    trimmer = HeapTrimmer(interval_s=0.01).start()
    assert called.wait(5.0), calls
    trimmer.stop()
    stopped_at = len(calls)
    threading.Event().wait(0.05)
    assert len(calls) == stopped_at and set(calls) == {0}


def test_heap_trimmer_does_nothing_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_gc, "_malloc_trim", lambda: None)
    trimmer = HeapTrimmer(interval_s=0.01).start()
    assert not any(t.name == "heap-trimmer" for t in threading.enumerate())
    trimmer.stop()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_glibc_malloc_trim_is_found_and_answers() -> None:
    trim = worker_gc._malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)
