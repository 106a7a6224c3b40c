"""A worker whose roles run as processes of their own: one worker to its operator, whatever happens to
one of its processes."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil

from pipeline.config import Settings
from pipeline.ops.collect import read_topic
from pipeline.ops.generate import tiny_requests
from tests.harness import WorkerProcess, produce_requests


def _role_processes(worker: WorkerProcess) -> list[psutil.Process]:
    assert worker.proc is not None
    children = psutil.Process(worker.proc.pid).children()
    return [c for c in children if "role_main" in " ".join(c.cmdline())]


def _pid_of(worker: WorkerProcess, role: str) -> int:
    match = re.search(rf"worker process {role}: pid (\d+)", worker.output())
    assert match, worker.output()[-3000:]
    return int(match.group(1))


def _said(worker: WorkerProcess, text: str, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while text not in worker.output():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _gone(procs: list[psutil.Process], timeout_s: float) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return not alive


def test_a_role_process_that_dies_stops_the_whole_worker_with_its_exit_code(e2e_settings: Settings) -> None:
    settings = e2e_settings
    with WorkerProcess(settings, "--model", "tiny", "--process-per-role", "on") as worker:
        worker.wait_assigned("input")
        worker.wait_assigned("inference")
        produce_requests(settings, tiny_requests(300, seed=3))
        assert len(read_topic(settings, settings.topics.output, expected=300, timeout_s=60)) == 300
        roles = _role_processes(worker)
        assert len(roles) == 2, worker.output()[-3000:]
        assert {p.pid for p in roles} == {_pid_of(worker, "input"), _pid_of(worker, "inference")}
        # The command became its supervisor (same pid, a fresh program): the settings' classes and the Kafka
        # client it used for its checks are not loaded there, only in the role processes.
        supervisor = psutil.Process(worker.proc.pid)
        assert "supervise_main" in " ".join(supervisor.cmdline())
        assert "worker" in supervisor.cmdline()  # ps still shows the command that started it
        libraries = {m.path.rsplit("/", 1)[-1] for m in supervisor.memory_maps()}
        assert not any("pydantic_core" in name or "librdkafka" in name for name in libraries), libraries
        assert any("librdkafka" in m.path for m in roles[0].memory_maps())
        os.kill(_pid_of(worker, "inference"), signal.SIGKILL)
        assert worker.proc is not None
        code = worker.proc.wait(timeout=60)
        assert code == 128 + signal.SIGKILL, worker.output()[-3000:]
        assert _gone(roles, timeout_s=5)  # the input process was stopped, not left behind
    assert _said(worker, "worker process inference exited (137); stopping the others")


def test_role_processes_stop_when_their_supervisor_is_killed(e2e_settings: Settings) -> None:
    settings = e2e_settings
    worker = WorkerProcess(settings, "--model", "tiny", "--process-per-role", "on").start()
    try:
        worker.wait_assigned("inference")
        roles = _role_processes(worker)
        assert len(roles) == 2
        assert worker.proc is not None
        os.kill(worker.proc.pid, signal.SIGKILL)  # the supervisor alone, not its process group
        worker.proc.wait(timeout=10)
        started = time.monotonic()
        assert _gone(roles, timeout_s=30), [p.pid for p in roles if p.is_running()]
        print(f"role processes gone {time.monotonic() - started:.1f} s after their supervisor")
        assert _said(worker, "SIGTERM: draining the hot path")  # they drained as on SIGTERM
    finally:
        if worker.alive():
            worker.kill()
