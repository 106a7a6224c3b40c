"""A worker whose roles run as processes of their own, under one supervising process.

The supervisor is what an operator or orchestrator sees: one command, one pid to signal, one exit code,
one HTTP port. It starts a process per role group (``multiprocessing`` spawn: a fresh interpreter that
shares nothing with this one, librdkafka threads included), forwards SIGTERM and SIGINT so that each
process drains and commits as a lone worker would, and stops them all when one stops, so that a fatal
error in one role ends the worker with that role's exit code instead of leaving half a pipeline running.
A process also gets SIGTERM when the supervisor dies without a word (``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from pipeline.config import Settings
from pipeline.observability.aggregate import ProcessEndpoints
from pipeline.observability.http import HealthServer

log = logging.getLogger("pipeline.supervisor")

PR_SET_PDEATHSIG = 1
STOP_MARGIN_S = 20.0  # past the drain timeout, before a process that does not stop is killed


def run_supervised(
    settings: Settings, groups: Sequence[tuple[str, ...]], loglevel: str, status_line: bool = False
) -> int:
    """Run one process per group until a signal or until one of them exits; returns the worker's code."""
    return Supervisor(settings, groups, loglevel, status_line).run()


class Supervisor:
    def __init__(
        self, settings: Settings, groups: Sequence[tuple[str, ...]], loglevel: str, status_line: bool = False
    ) -> None:
        self.settings = settings
        self.groups = list(groups)
        self.loglevel = loglevel
        self.status_line = status_line
        self.names = ["+".join(group) for group in self.groups]
        self.procs: list[BaseProcess] = []
        self.port_conns: dict[str, Connection] = {}
        self._signalled: signal.Signals | None = None

    def run(self) -> int:
        endpoints = ProcessEndpoints(self.names)
        server = None
        if self.settings.metrics_port:
            server = HealthServer(self.settings.metrics_port, endpoints.readiness, metrics=endpoints.metrics).start()
            log.info("metrics and health on :%d (/metrics, /healthz, /readyz), for every process", server.port)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            try:
                self._start_processes()
            except BaseException:
                self._stop_all()  # none of them outlives a supervisor that could not start them all
                raise
            return self._supervise(endpoints)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if server is not None:
                server.stop()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signalled = signal.Signals(signum)

    def _start_processes(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        for i, (name, roles) in enumerate(zip(self.names, self.groups, strict=True)):
            child_conn = None
            if self.settings.metrics_port:
                self.port_conns[name], child_conn = ctx.Pipe(duplex=False)
            # one status line on the terminal: the last group's, the one that runs the model
            status = self.status_line and i == len(self.groups) - 1
            proc = ctx.Process(
                target=process_main,
                args=(self.settings, roles, self.loglevel, status, child_conn, os.getpid()),
                name=f"pipeline-worker-{name}",
            )
            proc.start()
            log.info("worker process %s: pid %s", name, proc.pid)
            self.procs.append(proc)

    def _supervise(self, endpoints: ProcessEndpoints) -> int:
        codes: dict[str, int] = {}  # in the order the processes exited
        stopping_since: float | None = None
        deadline = self.settings.drain_timeout_s + STOP_MARGIN_S
        while True:
            for name, conn in self.port_conns.items():
                with contextlib.suppress(EOFError, OSError):
                    if endpoints.ports[name] is None and conn.poll():
                        endpoints.ports[name] = int(conn.recv())
            if self._signalled is not None and stopping_since is None:
                log.info("%s: stopping every worker process", self._signalled.name)
                stopping_since = self._stop_all()
            for name, proc in zip(self.names, self.procs, strict=True):
                if proc.exitcode is None or name in codes:
                    continue
                codes[name] = exit_status(proc.exitcode)
                if stopping_since is None:
                    log.error("worker process %s exited (%d); stopping the others", name, codes[name])
                    stopping_since = self._stop_all()
            if len(codes) == len(self.procs):
                return next((code for code in codes.values() if code), 0)
            if stopping_since is not None and time.monotonic() - stopping_since > deadline:
                for name, proc in zip(self.names, self.procs, strict=True):
                    if proc.is_alive():
                        log.error("worker process %s did not stop in %.0f s; killing it", name, deadline)
                        proc.kill()
            wait([proc.sentinel for proc in self.procs if proc.exitcode is None], timeout=0.2)

    def _stop_all(self) -> float:
        for proc in self.procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        return time.monotonic()


def exit_status(exitcode: int) -> int:
    """A process's exit code as a shell reports it: 128 + N for a process killed by signal N."""
    return 128 - exitcode if exitcode < 0 else exitcode


def process_main(
    settings: Settings,
    roles: tuple[str, ...],
    loglevel: str,
    status_line: bool,
    port_conn: Connection | None,
    supervisor_pid: int,
) -> None:
    """The entry point of one worker process (a fresh interpreter)."""
    _stop_with_supervisor(supervisor_pid)
    from pipeline.logs import configure_logging, settings_secrets
    from pipeline.processors.app import HealthBinding, run_worker
    from pipeline.processors.wiring import build_roles

    configure_logging(settings.log_level, settings.log_format, settings_secrets(settings))
    health = None if port_conn is None else HealthBinding(0, host="127.0.0.1", on_bound=port_conn.send)
    code = run_worker(
        settings,
        lambda hot_path: build_roles(settings, roles, hot_path),
        loglevel=loglevel,
        status_line=status_line,
        health=health,
    )
    sys.exit(code)


def _stop_with_supervisor(supervisor_pid: int) -> None:
    """Ask the kernel for a SIGTERM when the supervisor dies, so that no role outlives it (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor_pid:  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
