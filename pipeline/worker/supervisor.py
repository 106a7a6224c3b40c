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

The command that read and checked the settings does not stay on as the supervisor: it pickles each role
process's arguments, then replaces itself (``exec``, same pid) with a fresh interpreter that reads a
:class:`Plan` (those arguments and the few fields supervising needs, as plain data) from a pipe. The
settings' classes (pydantic), the CLI and the Kafka client it used for its checks are not in the process
that runs for the worker's whole life; it keeps the command line after the boot code, so ``ps`` still
shows it. Where it cannot exec (not POSIX, a plan larger than the pipe holds), it supervises in place.
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
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, BinaryIO

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from pipeline.observability.health import CHECKS, stalled
from pipeline.observability.http import HealthServer
from pipeline.observability.logs import configure_logging

if TYPE_CHECKING:
    from pipeline.config import Settings

log = logging.getLogger("pipeline.supervisor")

PR_SET_PDEATHSIG = 1
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVENESS_SAMPLES = (
    "pipeline_last_progress_time_seconds",
    "pipeline_work_pending",
    "pipeline_holding",
    "pipeline_unstarted_since_time_seconds",
)
STOP_MARGIN_S = 20.0  # past the drain timeout, before a process that does not stop is killed
# A role process's first words: its module path (pickled, so that it imports what this process would),
# then the entry point, which reads its arguments from the same pipe.
_BOOT = (
    "import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    "from pipeline.worker.supervisor import role_main; role_main(sys.stdin.buffer)"
)
# The supervising process's first words: the pipe's descriptor is its first argument; the module path, then
# the plan, come through it. The command line that started the worker follows, for ``ps``.
_SUPERVISE = (
    "import os, pickle, sys; pipe = os.fdopen(int(sys.argv[1]), 'rb'); sys.path[:] = pickle.load(pipe); "
    "from pipeline.worker.supervisor import supervise_main; supervise_main(pipe)"
)


@dataclass(frozen=True)
class Plan:
    """What supervising needs, as plain data: each role process's arguments (pickled by the command that
    read the settings, so that this process never unpickles them) and the settings' few fields it reads."""

    names: tuple[str, ...]
    boots: tuple[bytes, ...]  # per process: (settings, roles, faust log level, supervisor pid), pickled
    metrics_port: int
    metrics_host: str
    stall_timeout_s: float
    drain_timeout_s: float
    status_line: bool
    log_level: str
    log_format: str
    secrets: tuple[str, ...]

    @classmethod
    def of(
        cls, settings: Settings, groups: Sequence[tuple[str, ...]], loglevel: str, status_line: bool = False
    ) -> Plan:
        pid = os.getpid()  # the supervisor's, whether it supervises in place or after exec
        return cls(
            names=tuple("+".join(group) for group in groups),
            boots=tuple(pickle.dumps((settings, tuple(group), loglevel, pid)) for group in groups),
            metrics_port=settings.metrics_port,
            metrics_host=settings.metrics_host,
            stall_timeout_s=settings.stall_timeout_s,
            drain_timeout_s=settings.drain_timeout_s,
            status_line=status_line,
            log_level=settings.log_level,
            log_format=settings.log_format,
            secrets=tuple(settings.secret_values()),
        )


def run_supervised(
    settings: Settings, groups: Sequence[tuple[str, ...]], loglevel: str, status_line: bool = False
) -> int:
    """Run one process per group until a signal or until one of them exits; returns the worker's code
    (where this process could exec, the fresh supervising process exits with it instead)."""
    plan = Plan.of(settings, groups, loglevel, status_line)
    exec_supervisor(plan)
    return Supervisor(plan).run()


def exec_supervisor(plan: Plan) -> None:
    """Replace this process with a fresh interpreter that supervises ``plan`` (never returns), or return
    having changed nothing where that cannot be done."""
    if os.name != "posix":
        return
    data = pickle.dumps(sys.path) + pickle.dumps(plan)
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)  # a plan larger than the pipe holds: supervise in place, never hang
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
        os.close(write_fd)
        write_fd = -1
        os.set_inheritable(read_fd, True)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.execv(sys.executable, [sys.executable, "-c", _SUPERVISE, str(read_fd), *sys.argv])
    except OSError as exc:  # BlockingIOError included
        log.debug("supervising in place (%s)", exc)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


def supervise_main(pipe: BinaryIO) -> None:
    """The entry point of the supervising process after exec: the plan from the pipe, then supervision."""
    with pipe:
        plan: Plan = pickle.load(pipe)
    configure_logging(plan.log_level, plan.log_format, plan.secrets)
    sys.exit(Supervisor(plan).run())


class Supervisor:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.procs: list[subprocess.Popen[bytes]] = []
        self._signalled: signal.Signals | None = None
        self._metrics_dir = tempfile.mkdtemp(prefix="pipeline-metrics-")
        self._registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self._registry, path=self._metrics_dir)

    def run(self) -> int:
        server = None
        status = None
        if self.plan.metrics_port:
            server = HealthServer(
                self.plan.metrics_port,
                self.readiness,
                self.metrics,
                liveness=self.liveness,
                host=self.plan.metrics_host,
            ).start()
            log.info(
                "metrics and health on %s:%d (/metrics, /healthz, /readyz), for every process",
                self.plan.metrics_host,
                server.port,
            )
        if self.plan.status_line:
            from pipeline.observability.status import StatusLine  # rich, only for a terminal

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
        running = len(pids) == len(self.procs) == len(self.plan.names)  # none ready before all of them started
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
                self.plan.stall_timeout_s,
                values.get("pipeline_unstarted_since_time_seconds", 0.0),
            )
            alive[role] = alive.get(role, True) and not stuck
        return alive

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signalled = signal.Signals(signum)

    def _start_processes(self) -> None:
        # A role process picks its metric storage when it first imports prometheus_client: with this
        # variable set, in files the supervisor reads.
        env = {**os.environ, MULTIPROC_ENV: self._metrics_dir}
        for name, boot in zip(self.plan.names, self.plan.boots, strict=True):
            proc = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, env=env)
            self.procs.append(proc)  # before the hand-over: a failed one is still stopped
            assert proc.stdin is not None
            with proc.stdin:
                pickle.dump(sys.path, proc.stdin)
                proc.stdin.write(boot)
            log.info("worker process %s: pid %s", name, proc.pid)

    def _supervise(self) -> int:
        codes: dict[str, int] = {}  # in the order the processes exited
        stopping_since: float | None = None
        deadline = self.plan.drain_timeout_s + STOP_MARGIN_S
        while True:
            if self._signalled is not None and stopping_since is None:
                log.info("%s: stopping every worker process", self._signalled.name)
                stopping_since = self._stop_all()
            for name, proc in zip(self.plan.names, self.procs, strict=True):
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
                for name, proc in zip(self.plan.names, self.procs, strict=True):
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
