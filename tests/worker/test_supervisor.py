"""The supervisor's probes before its processes run (unit tier: no process is started)."""

from __future__ import annotations

import shutil

from pipeline.config import Settings
from pipeline.worker.supervisor import Supervisor


def test_readiness_holds_nothing_before_every_process_of_the_layout_started() -> None:
    # The supervisor serves /readyz before it spawns its processes: an empty set of processes is not "all ready".
    supervisor = Supervisor(Settings(), [("input",), ("inference",)], "INFO")
    try:
        assert supervisor.procs == []
        assert not any(supervisor.readiness().values())
    finally:
        shutil.rmtree(supervisor._metrics_dir, ignore_errors=True)
