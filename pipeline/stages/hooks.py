"""Hooks: before, after and on-error callbacks per event, configured by dotted path and timed.

A hook is a plain function called once per event: ``pre_process(request) -> request | None`` (return a
replacement request or None to keep it), ``post_process(request, result) -> result | None``, and
``on_error(error_event) -> None``. A hook that raises sends that event to the error and dead-letter topics
(stage ``HOOK``); the worker goes on. Timings go to an observer so metrics stay outside this module.

Deadline: hooks run on the worker's event loop, so one stuck hook would stall every partition of the
worker. A hook call that runs past the registry's deadline fails its event as ``TIMEOUT`` instead. On the
main thread (where the event loop runs) it is interrupted: a one-shot ``ITIMER_REAL`` timer raises
:class:`HookTimeout` inside the hook from a ``SIGALRM`` handler. Python runs that handler between
bytecodes, so a hook inside one long C call that does not check for signals (a big numpy operation, a
library's blocking read) is interrupted only when the call returns. Off the main thread Python cannot use
signals, so a late hook there is not interrupted at all: it runs to its end and its event fails as
``TIMEOUT`` afterwards. Either way a hook that returns late fails as ``TIMEOUT``, by measure.
"""

from __future__ import annotations

import importlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from pipeline.serde import ErrorCode, Failure, Stage

try:
    # The C function under ``signal.signal``: the wrapper turns the handler it returns into an enum member
    # when it can, which for a Python function means raising and catching a ValueError, about 3 µs a call
    # here; the handler is swapped twice per hook call.
    from _signal import signal as _set_handler
except ImportError:  # pragma: no cover - not CPython
    _set_handler = signal.signal

HookFn = Callable[..., Any]
TimingObserver = Callable[[str, str, float], None]  # (kind, hook name, seconds)
_CAN_ALARM = hasattr(signal, "setitimer")
_IN_FLIGHT_S = 1e-6  # what setitimer reports for a timer that has fired or is firing as it is stopped
_LATE_ALARM_WAIT_S = 0.002  # how long such an alarm is waited for when another thread took it


class HookConfigError(Exception):
    """A configured hook path that does not resolve to a callable."""


class HookTimeout(BaseException):
    """A hook ran past its deadline. Raised inside the hook when it can be interrupted (its traceback then
    shows where the hook was), made afterwards when not. A BaseException, like KeyboardInterrupt, so that
    a hook's own ``except Exception`` does not swallow the interruption."""


class HookFailed(Exception):
    """A hook raised or ran past its deadline; wraps its exception so routing can tell it from a model
    failure. ``timed_out`` says which (``cause`` is then a :class:`HookTimeout`)."""

    def __init__(self, kind: str, name: str, cause: BaseException, *, timed_out: bool = False) -> None:
        if timed_out:
            super().__init__(f"{kind} hook {name} {cause}")
        else:
            super().__init__(f"{kind} hook {name} raised {type(cause).__name__}: {cause}")
        self.kind = kind
        self.name = name
        self.cause = cause
        self.timed_out = timed_out

    def failure(self, event_id: str | None, model: str | None) -> Failure:
        """The event's failure: stage ``HOOK``, code ``TIMEOUT`` (retryable: the same event may well be
        quicker later) or ``HOOK_FAILED``, the hook's own exception in the dead letter."""
        return Failure(
            Stage.HOOK,
            ErrorCode.TIMEOUT if self.timed_out else ErrorCode.HOOK_FAILED,
            str(self),
            retryable=self.timed_out,
            exception=self.cause,
            event_id=event_id,
            model=model,
        )


class _Alarm:
    """The process's ``SIGALRM`` while a hook runs on the main thread (signals are process-wide, so there is
    one of these). Per call: our handler in, the timer armed, the hook, the timer disarmed, the previous
    handler and timer back; ``setitimer`` and ``sigaction`` twice each, about 2 µs here.

    An alarm can fire just after the hook returned and be handled late (Python runs signal handlers
    between bytecodes of the main thread). The handler raises only while ``armed`` (set around the hook
    call alone), and a late alarm is waited for and swallowed before the previous handler comes back, so
    it can neither escape into the caller nor reach someone else's handler.
    """

    def __init__(self) -> None:
        self.armed = False  # the hook is running: the handler may raise into it
        self.ours = False  # our timer is the process's timer: an alarm now is ours
        self.fired = False  # our alarm was handled
        self.busy = False  # a call is under way (a hook calling hooks times the inner ones by measure)
        self.previous: Any = signal.SIG_DFL  # the handler ours replaced for the call
        self.handler = self._on_alarm  # one bound method, so that it is not made again per call

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.ours:
            self.fired = True
            if self.armed:
                self.armed = False
                raise HookTimeout
            return
        # not ours: the previous owner's timer, expiring as our handler went in or as it came back out
        _forward(self.previous, signum, frame)

    def call(self, fn: HookFn, args: tuple[Any, ...], deadline_s: float, started: float) -> Any:
        """``fn(*args)`` under the deadline; HookTimeout when interrupted. Main thread only, not nested;
        ``started`` is the caller's ``time.perf_counter()`` just before."""
        self.busy = True
        try:
            self.previous = _set_handler(signal.SIGALRM, self.handler)
            # ``ours`` before the timer: a thread descheduled right after arming can find the alarm
            # already pending when it resumes, and it must not go to the previous handler then
            self.ours, self.fired = True, False
            before, interval = signal.setitimer(signal.ITIMER_REAL, deadline_s)
            if 0 < before <= deadline_s:
                # someone's alarm comes first: leave it alone, and time this hook by measure only
                signal.setitimer(signal.ITIMER_REAL, before, interval)
                _set_handler(signal.SIGALRM, self.previous)
                self.ours = False
                return fn(*args)
            try:
                return self._interruptible(fn, args)
            finally:
                self._restore(before, interval, started)
        finally:
            self.busy = False

    def _interruptible(self, fn: HookFn, args: tuple[Any, ...]) -> Any:
        # Only this frame runs with ``armed`` set; the handler clears it before raising, so whatever path
        # leaves here (the hook's return, its exception, or HookTimeout from anywhere in this frame), the
        # handler cannot raise again afterwards.
        try:
            self.armed = True
            return fn(*args)
        finally:
            self.armed = False

    def _restore(self, before: float, interval: float, started: float) -> None:
        # Once this returns our timer sends nothing more; what it sent is on its way to a thread. Linux
        # sends SIGALRM to the main thread when it can, and a signal for the thread itself is taken on the
        # way out of this call: its handler is then pending, and signal.signal runs pending handlers
        # before it swaps, while ``ours`` still says the alarm is ours.
        left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        if left <= _IN_FLIGHT_S and not self.fired:
            # The timer had expired (0 left), or was expiring as it was stopped (Linux reports 1 µs then,
            # and sends the signal all the same). Had the main thread taken it, its handler would have run
            # at this loop's first check; another thread may take a moment. (A timer stopped with under
            # 2 µs to go sends nothing: a rare wait for nothing.)
            until = time.perf_counter() + _LATE_ALARM_WAIT_S
            while not self.fired and time.perf_counter() < until:
                pass
        _set_handler(signal.SIGALRM, self.previous)
        self.ours = False
        if before > 0:  # the previous owner's timer, less the time the hook took
            signal.setitimer(signal.ITIMER_REAL, max(before - (time.perf_counter() - started), 1e-6), interval)


def _forward(previous: Any, signum: int, frame: FrameType | None) -> None:
    """What the previous ``SIGALRM`` disposition would have done with a signal that was not ours."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:  # SIGALRM's default action ends the process
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGALRM)


_ALARM = _Alarm()


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
    """The configured hooks, each call timed and held to ``deadline_s`` (None: no deadline).

    On the main thread a hook past its deadline is interrupted (see the module docstring). Off it, it
    cannot be: it runs to its end and then fails its event as ``TIMEOUT`` all the same.
    """

    pre_process: list[tuple[str, HookFn]] = field(default_factory=list)
    post_process: list[tuple[str, HookFn]] = field(default_factory=list)
    on_error: list[tuple[str, HookFn]] = field(default_factory=list)
    observer: TimingObserver | None = None
    deadline_s: float | None = None

    @classmethod
    def from_paths(
        cls,
        pre: Sequence[str] = (),
        post: Sequence[str] = (),
        error: Sequence[str] = (),
        observer: TimingObserver | None = None,
        deadline_s: float | None = None,
    ) -> HookRegistry:
        return cls(
            [load_hook(p) for p in pre],
            [load_hook(p) for p in post],
            [load_hook(p) for p in error],
            observer,
            deadline_s,
        )

    def __post_init__(self) -> None:
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"a hook deadline is positive or None, not {self.deadline_s!r}")

    def __bool__(self) -> bool:
        return bool(self.pre_process or self.post_process or self.on_error)

    def _call(self, kind: str, name: str, fn: HookFn, *args: Any) -> Any:
        deadline = self.deadline_s
        started = time.perf_counter()
        try:
            if deadline is None:
                return fn(*args)
            if _CAN_ALARM and not _ALARM.busy and threading.current_thread() is threading.main_thread():
                result = _ALARM.call(fn, args, deadline, started)
            else:
                result = fn(*args)
            took = time.perf_counter() - started
            if took > deadline:  # not interrupted (off the main thread, or it swallowed HookTimeout)
                raise HookTimeout(f"ran past its deadline of {deadline * 1000:g} ms (took {took * 1000:.0f} ms)")
            return result
        except HookTimeout as exc:
            if not exc.args and deadline is not None:  # raised inside the hook by the alarm
                exc.args = (f"ran past its deadline of {deadline * 1000:g} ms (interrupted)",)
            raise HookFailed(kind, name, exc, timed_out=True) from exc
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
