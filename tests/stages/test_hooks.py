"""Hooks: loaded by dotted path, timed, their failures wrapped as the event's own."""

from __future__ import annotations

import pytest

from pipeline.serde import ErrorCode, Stage
from pipeline.stages.hooks import HookConfigError, HookFailed, HookRegistry, load_hook


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
