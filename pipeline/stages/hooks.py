"""Hooks: before, after and on-error callbacks per event, configured by dotted path and timed.

A hook is a plain function called once per event: ``pre_process(request) -> request | None`` (return a
replacement request or None to keep it), ``post_process(request, result) -> result | None``, and
``on_error(error_event) -> None``. A hook that raises sends that event to the error and dead-letter topics
(stage ``HOOK``); the worker goes on. Timings go to an observer so metrics stay outside this module.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.serde import ErrorCode, Failure, Stage

HookFn = Callable[..., Any]
TimingObserver = Callable[[str, str, float], None]  # (kind, hook name, seconds)


class HookConfigError(Exception):
    """A configured hook path that does not resolve to a callable."""


class HookFailed(Exception):
    """A hook raised; wraps its exception so routing can tell it from a model failure."""

    def __init__(self, kind: str, name: str, cause: BaseException) -> None:
        super().__init__(f"{kind} hook {name} raised {type(cause).__name__}: {cause}")
        self.kind = kind
        self.name = name
        self.cause = cause

    def failure(self, event_id: str | None, model: str | None) -> Failure:
        """The event's failure: stage ``HOOK``, the hook's own exception in the dead letter."""
        return Failure(
            Stage.HOOK, ErrorCode.HOOK_FAILED, str(self), exception=self.cause, event_id=event_id, model=model
        )


def load_hook(path: str) -> tuple[str, HookFn]:
    """``package.module:function`` or ``package.module.function``."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise HookConfigError(f"hook {path!r} is not a dotted path like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HookConfigError(f"hook {path!r}: cannot import {module_name}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise HookConfigError(f"hook {path!r}: {module_name} has no callable {attr!r}")
    return path, fn


@dataclass
class HookRegistry:
    pre_process: list[tuple[str, HookFn]] = field(default_factory=list)
    post_process: list[tuple[str, HookFn]] = field(default_factory=list)
    on_error: list[tuple[str, HookFn]] = field(default_factory=list)
    observer: TimingObserver | None = None

    @classmethod
    def from_paths(
        cls,
        pre: Sequence[str] = (),
        post: Sequence[str] = (),
        error: Sequence[str] = (),
        observer: TimingObserver | None = None,
    ) -> HookRegistry:
        return cls(
            [load_hook(p) for p in pre],
            [load_hook(p) for p in post],
            [load_hook(p) for p in error],
            observer,
        )

    def __bool__(self) -> bool:
        return bool(self.pre_process or self.post_process or self.on_error)

    def _call(self, kind: str, name: str, fn: HookFn, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args)
        except Exception as exc:
            raise HookFailed(kind, name, exc) from exc
        finally:
            if self.observer is not None:
                self.observer(kind, name, time.perf_counter() - started)

    def run_pre(self, request: dict[str, Any]) -> dict[str, Any]:
        for name, fn in self.pre_process:
            replaced = self._call("pre_process", name, fn, request)
            if replaced is not None:
                request = replaced
        return request

    def run_post(self, request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        for name, fn in self.post_process:
            replaced = self._call("post_process", name, fn, request, result)
            if replaced is not None:
                result = replaced
        return result

    def run_on_error(self, error_event: dict[str, Any]) -> None:
        """On-error hooks never re-route: their failure is logged by the caller, not dead-lettered again."""
        for name, fn in self.on_error:
            self._call("on_error", name, fn, error_event)
