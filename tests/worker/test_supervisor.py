"""The supervisor's probes before its processes run, and its plan (unit tier: no worker process is started)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

from pipeline.config import Settings
from pipeline.worker.supervisor import Plan, Supervisor


def test_readiness_holds_nothing_before_every_process_of_the_layout_started() -> None:
    # The supervisor serves /readyz before it spawns its processes: an empty set of processes is not "all ready".
    supervisor = Supervisor(Plan.of(Settings(), [("input",), ("inference",)], "INFO"))
    try:
        assert supervisor.procs == []
        assert not any(supervisor.readiness().values())
    finally:
        shutil.rmtree(supervisor._metrics_dir, ignore_errors=True)


def test_a_plan_larger_than_the_pipe_holds_is_supervised_in_place_not_hung_on() -> None:
    # In a process of its own: were it to exec, it would replace the test's interpreter.
    script = textwrap.dedent(
        """
        import dataclasses, os
        from pipeline.config import Settings
        from pipeline.worker.supervisor import Plan, exec_supervisor
        plan = Plan.of(Settings(), [("input",), ("inference",)], "INFO")
        before = set(os.listdir("/proc/self/fd"))
        exec_supervisor(dataclasses.replace(plan, boots=(b"x" * 4_000_000,) * 2))
        print("in place", sorted(set(os.listdir("/proc/self/fd")) - before))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "in place []"  # and both ends of its pipe closed
