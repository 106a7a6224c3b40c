"""A worker whose roles run as processes of their own, under one supervising process.

The supervisor is what an operator or orchestrator sees: one command, one pid to signal, one exit code,
one HTTP port. The processes count into prometheus_client's multiprocess files (a folder the supervisor
makes and removes), which the supervisor serves as one ``/metrics``; each process publishes its readiness
checks there too, so ``/readyz`` holds only while every process is ready. It starts a process per role
group (a fresh interpreter that shares nothing with this one, librdkafka threads included, given its
settings through a pipe), forwards SIGTERM and SIGINT so that each
process drains and commits as a lone worker would, and stops them all when one stops, so that a fatal
error in one role ends the worker with that role's exit code instead of leaving half a pipeline running.
A process also gets SIGTERM when the supervisor dies without a word (``PR_SET_PDEATHSIG`` on Linux).

Not ``multiprocessing``: its spawn start method runs a resource-tracker process beside the worker and
imports the parent's main module (the whole command line) into every child, memory that does nothing
here.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType
from typing import BinaryIO

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from pipeline.config import Settings
from pipeline.observability.health import CHECKS, stalled
from pipeline.observability.http import HealthServer
from pipeline.observability.status import StatusLine

log = logging.getLogger("pipeline.supervisor")

PR_SET_PDEATHSIG = 1
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVENESS_SAMPLES = ("pipeline_last_progress_time_seconds", "pipeline_work_pending", "pipeline_holding")
STOP_MARGIN_S = 20.0  # past the drain timeout, before a process that does not stop is killed
# A role process's first words: its module path (pickled, so that it imports what this process would),
# then the entry point, which reads its arguments from the same pipe.
_BOOT = (
    "import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    "from pipeline.worker.supervisor import role_main; role_main(sys.stdin.buffer)"
)


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
        self.procs: list[subprocess.Popen[bytes]] = []
        self._signalled: signal.Signals | None = None
        self._metrics_dir = tempfile.mkdtemp(prefix="pipeline-metrics-")
        self._registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self._registry, path=self._metrics_dir)

    def run(self) -> int:
        server = None
        status = None
        if self.settings.metrics_port:
            server = HealthServer(
                self.settings.metrics_port,
                self.readiness,
                self.metrics,
                liveness=self.liveness,
                host=self.settings.metrics_host,
            ).start()
            log.info(
                "metrics and health on %s:%d (/metrics, /healthz, /readyz), for every process",
                self.settings.metrics_host,
                server.port,
            )
        if self.status_line:
            status = StatusLine(self._registry.collect)
            status.start()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            try:
                self._start_processes()
            except BaseException:
                self._stop_all()  # none of them outlives a supervisor that could not start them all
                raise
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if status is not None:
                status.stop()
            if server is not None:
                server.stop()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def metrics(self) -> bytes:
        """Every process's metrics, added up (prometheus_client's multiprocess collector)."""
        return generate_latest(self._registry)

    def readiness(self) -> dict[str, bool]:
        """Each check holds only while it holds in every process of the layout; a process that has not
        published its checks yet, or has not been started yet, holds none."""
        pids = {str(proc.pid) for proc in self.procs if proc.poll() is None}
        seen: dict[str, dict[str, bool]] = {}
        for family in self._registry.collect():
            for sample in family.samples:
                if sample.name == "pipeline_ready_check":
                    pid = sample.labels.get("pid", "")
                    seen.setdefault(pid, {})[sample.labels.get("check", "")] = sample.value == 1
        running = len(pids) == len(self.procs) == len(self.groups)  # none ready before all of them started
        return {check: running and all(seen.get(pid, {}).get(check, False) for pid in pids) for check in CHECKS}

    def liveness(self) -> dict[str, bool]:
        """Per role: not stalled in any running process (the rule is pipeline/observability/health.py's)."""
        pids = {str(proc.pid) for proc in self.procs if proc.poll() is None}
        state: dict[tuple[str, str], dict[str, float]] = {}
        for family in self._registry.collect():
            for sample in family.samples:
                if sample.name in _LIVENESS_SAMPLES and sample.labels.get("pid") in pids:
                    key = (sample.labels["pid"], sample.labels.get("role", ""))
                    state.setdefault(key, {})[sample.name] = sample.value
        now = time.time()
        alive: dict[str, bool] = {}
        for (_pid, role), values in state.items():
            stuck = stalled(
                values.get("pipeline_last_progress_time_seconds", now),
                values.get("pipeline_work_pending", 0) == 1,
                values.get("pipeline_holding", 0) == 1,
                now,
                self.settings.stall_timeout_s,
            )
            alive[role] = alive.get(role, True) and not stuck
        return alive

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signalled = signal.Signals(signum)

    def _start_processes(self) -> None:
        # A role process picks its metric storage when it first imports prometheus_client: with this
        # variable set, in files the supervisor reads.
        env = {**os.environ, MULTIPROC_ENV: self._metrics_dir}
        for name, roles in zip(self.names, self.groups, strict=True):
            proc = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, env=env)
            self.procs.append(proc)  # before the hand-over: a failed one is still stopped
            assert proc.stdin is not None
            with proc.stdin:
                pickle.dump(sys.path, proc.stdin)
                pickle.dump((self.settings, roles, self.loglevel, os.getpid()), proc.stdin)
            log.info("worker process %s: pid %s", name, proc.pid)

    def _supervise(self) -> int:
        codes: dict[str, int] = {}  # in the order the processes exited
        stopping_since: float | None = None
        deadline = self.settings.drain_timeout_s + STOP_MARGIN_S
        while True:
            if self._signalled is not None and stopping_since is None:
                log.info("%s: stopping every worker process", self._signalled.name)
                stopping_since = self._stop_all()
            for name, proc in zip(self.names, self.procs, strict=True):
                exitcode = proc.poll()
                if exitcode is None or name in codes:
                    continue
                codes[name] = exit_status(exitcode)
                multiprocess.mark_process_dead(proc.pid, self._metrics_dir)
                if stopping_since is None:
                    log.error("worker process %s exited (%d); stopping the others", name, codes[name])
                    stopping_since = self._stop_all()
            if len(codes) == len(self.procs):
                return next((code for code in codes.values() if code), 0)
            if stopping_since is not None and time.monotonic() - stopping_since > deadline:
                for name, proc in zip(self.names, self.procs, strict=True):
                    if proc.poll() is None:
                        log.error("worker process %s did not stop in %.0f s; killing it", name, deadline)
                        proc.kill()
            time.sleep(0.1)

    def _stop_all(self) -> float:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        return time.monotonic()


def exit_status(exitcode: int) -> int:
    """A process's exit code as a shell reports it: 128 + N for a process killed by signal N."""
    return 128 - exitcode if exitcode < 0 else exitcode


def role_main(pipe: BinaryIO) -> None:
    """What a role process runs first: its arguments from the supervisor's pipe, then the worker."""
    settings, roles, loglevel, supervisor_pid = pickle.load(pipe)
    process_main(settings, roles, loglevel, supervisor_pid)


def process_main(settings: Settings, roles: tuple[str, ...], loglevel: str, supervisor_pid: int) -> None:
    """The entry point of one worker process (a fresh interpreter)."""
    _stop_with_supervisor(supervisor_pid)
    from pipeline.model.errors import ModelError
    from pipeline.observability.logs import configure_logging
    from pipeline.serde import SchemaStoreError
    from pipeline.stages.hooks import HookConfigError
    from pipeline.worker.run import run_worker

    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    try:
        code = run_worker(settings, roles, loglevel=loglevel)
    except (ModelError, HookConfigError, SchemaStoreError) as exc:  # a start-up problem: one line
        print(f"worker process {'+'.join(roles)}: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


def _stop_with_supervisor(supervisor_pid: int) -> None:
    """Ask the kernel for a SIGTERM when the supervisor dies, so that no role outlives it (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor_pid:  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
