"""Hooks: loaded by dotted path, timed, their failures wrapped as the event's own; a hook past its deadline
interrupted (on the main thread) or measured (off it), and the process's SIGALRM handed back as it was."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from types import FrameType

import numpy as np
import pytest

from pipeline.serde import ErrorCode, Stage
from pipeline.stages.hooks import HookConfigError, HookFailed, HookRegistry, HookTimeout, load_hook


def _upper(request: dict) -> dict:  # type: ignore[type-arg]
    return {**request, "text": request["text"].upper()}


def _boom(request: dict) -> None:  # type: ignore[type-arg]
    raise RuntimeError("hook exploded")


def test_hooks_load_by_dotted_path_time_and_wrap_failures() -> None:
    timings: list[tuple[str, str, float]] = []
    registry = HookRegistry.from_paths(pre=[f"{__name__}:_upper"], observer=lambda k, n, s: timings.append((k, n, s)))
    assert registry.run_pre({"text": "hi"}) == {"text": "HI"}
    assert timings and timings[0][0] == "pre_process" and timings[0][2] >= 0
    failing = HookRegistry.from_paths(pre=[f"{__name__}._boom"])
    with pytest.raises(HookFailed, match="hook exploded"):
        failing.run_pre({"text": "x"})
    with pytest.raises(HookConfigError):
        load_hook("no_such_module_xyz:fn")
    with pytest.raises(HookConfigError):
        load_hook(f"{__name__}:missing")


def test_a_failed_hook_is_its_events_failure() -> None:
    failing = HookRegistry.from_paths(pre=[f"{__name__}._boom"])
    with pytest.raises(HookFailed) as caught:
        failing.run_pre({"text": "x"})
    failure = caught.value.failure("e-1", "tiny")
    assert (failure.stage, failure.code, failure.event_id, failure.model) == (
        Stage.HOOK,
        ErrorCode.HOOK_FAILED,
        "e-1",
        "tiny",
    )
    assert isinstance(failure.exception, RuntimeError)


# -- deadlines -------------------------------------------------------------------------------------------

DEADLINE_S = 0.2


def _sleeps(request: dict) -> None:  # type: ignore[type-arg]
    time.sleep(5)


def _spins(request: dict) -> None:  # type: ignore[type-arg]
    while True:
        pass


def _swallows(request: dict) -> None:  # type: ignore[type-arg]
    """Catches the interruption and goes on: not interrupted, but late all the same."""
    until = time.perf_counter() + 0.4
    while time.perf_counter() < until:
        with contextlib.suppress(BaseException):
            time.sleep(0.05)


def _quick(request: dict) -> dict:  # type: ignore[type-arg]
    return {**request, "seen": True}


def _late(request: dict) -> dict:  # type: ignore[type-arg]
    time.sleep(DEADLINE_S + 0.2)
    return request


def _timed_out(registry: HookRegistry) -> tuple[HookFailed, float]:
    started = time.perf_counter()
    with pytest.raises(HookFailed) as caught:
        registry.run_pre({"text": "x"})
    return caught.value, time.perf_counter() - started


@pytest.fixture
def own_alarm() -> Iterator[list[int]]:
    """A SIGALRM handler and a far timer of the test's own (in place of pytest-timeout's, put back after),
    to see that hooks hand both back untouched; the handler's calls are recorded."""
    calls: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGALRM, handler)
    previous_timer = signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        yield calls
        assert signal.getsignal(signal.SIGALRM) is handler
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90.0 < left <= 100.0, left
        assert calls == []  # no alarm of the hooks' reached it
    finally:
        signal.setitimer(signal.ITIMER_REAL, *previous_timer)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("hook", ["_sleeps", "_spins"])
def test_a_hook_past_its_deadline_is_interrupted_and_times_out(hook: str, own_alarm: list[int]) -> None:
    timings: list[tuple[str, str, float]] = []
    registry = HookRegistry.from_paths(
        pre=[f"{__name__}:{hook}"], observer=lambda k, n, s: timings.append((k, n, s)), deadline_s=DEADLINE_S
    )
    failed, took = _timed_out(registry)
    assert DEADLINE_S <= took < DEADLINE_S + 0.5, took
    assert failed.timed_out and isinstance(failed.cause, HookTimeout)
    assert "200 ms" in str(failed) and "interrupted" in str(failed)
    failure = failed.failure("e-1", "tiny")
    assert (failure.stage, failure.code, failure.retryable, failure.event_id, failure.model) == (
        Stage.HOOK,
        ErrorCode.TIMEOUT,
        True,
        "e-1",
        "tiny",
    )
    # the dead letter's stack trace shows where the hook was when it was stopped
    frames = [f.name for f in traceback.extract_tb(failed.cause.__traceback__)]
    assert hook in frames
    assert len(timings) == 1 and timings[0][2] >= DEADLINE_S  # still timed


def test_a_quick_hook_is_unaffected(own_alarm: list[int]) -> None:
    timings: list[tuple[str, str, float]] = []
    registry = HookRegistry.from_paths(
        pre=[f"{__name__}:_quick"], observer=lambda k, n, s: timings.append((k, n, s)), deadline_s=DEADLINE_S
    )
    for _ in range(1000):
        assert registry.run_pre({"text": "x"}) == {"text": "x", "seen": True}
    assert len(timings) == 1000 and all(s < DEADLINE_S for _, _, s in timings)
    failing = HookRegistry.from_paths(pre=[f"{__name__}._boom"], deadline_s=DEADLINE_S)
    with pytest.raises(HookFailed) as caught:
        failing.run_pre({"text": "x"})
    assert not caught.value.timed_out and caught.value.failure(None, None).code == ErrorCode.HOOK_FAILED


def test_a_hook_that_swallows_the_interruption_still_times_out(own_alarm: list[int]) -> None:
    registry = HookRegistry.from_paths(pre=[f"{__name__}:_swallows"], deadline_s=DEADLINE_S)
    failed, took = _timed_out(registry)
    # (the alarm lands in the sleep, almost always; were it to land on the loop's own line, the hook would
    # simply have been interrupted)
    assert took >= DEADLINE_S and failed.timed_out and failed.failure(None, None).code == ErrorCode.TIMEOUT


def test_an_alarm_right_as_the_hook_returns_never_escapes(own_alarm: list[int]) -> None:
    """Hooks that end within a few hundred microseconds of a 2 ms deadline: each call either answers or
    fails as TIMEOUT; no HookTimeout reaches the caller and no alarm reaches the previous handler."""
    deadline = 0.002
    ends = np.random.default_rng(7).uniform(0.0018, 0.0022, size=300)

    def around_the_deadline(request: dict[str, float]) -> None:
        until = time.perf_counter() + request["spin"]
        while time.perf_counter() < until:
            pass

    registry = HookRegistry([("around", around_the_deadline)], deadline_s=deadline)
    answered = timed_out = 0
    for spin in ends:
        try:
            registry.run_pre({"spin": float(spin)})
            answered += 1
        except HookFailed as exc:
            assert exc.timed_out
            timed_out += 1
    assert answered + timed_out == len(ends)


def test_off_the_main_thread_a_late_hook_times_out_by_measure() -> None:
    results: list[object] = []

    def run(path: str) -> None:
        registry = HookRegistry.from_paths(pre=[f"{__name__}:{path}"], deadline_s=DEADLINE_S)
        try:
            results.append(registry.run_pre({"text": "x"}))
        except HookFailed as exc:
            results.append(exc)

    for path in ("_late", "_quick"):
        thread = threading.Thread(target=run, args=(path,))
        thread.start()
        thread.join(timeout=10)
    late, quick = results
    assert isinstance(late, HookFailed) and late.timed_out and "took" in str(late)
    assert late.failure("e-2", None).code == ErrorCode.TIMEOUT
    assert quick == {"text": "x", "seen": True}


def test_no_deadline_is_no_deadline() -> None:
    registry = HookRegistry.from_paths(pre=[f"{__name__}:_late"])
    assert registry.run_pre({"text": "x"}) == {"text": "x"}
    with pytest.raises(ValueError):
        HookRegistry(deadline_s=0)
