"""A worker process's life: health endpoint first, then the runtime, then Faust until a signal or a fatal
error, then a drain that commits what was answered."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import generate_latest

from pipeline.config import Settings
from pipeline.observability.health import Health
from pipeline.observability.http import HealthServer
from pipeline.observability.metrics import Metrics
from pipeline.worker.build import build_runtime
from pipeline.worker.faust_app import PipelineWorker
from pipeline.worker.gc import HeapTrimmer, freeze_startup_heap, set_young_threshold
from pipeline.worker.readers import LANE, reader_names

log = logging.getLogger("pipeline.worker")

EXIT_FATAL = 2


@dataclass(frozen=True)
class HealthBinding:
    """Where a worker process serves /metrics, /healthz and /readyz."""

    port: int
    host: str = "0.0.0.0"


def run_worker(
    settings: Settings,
    roles: Sequence[str],
    loglevel: str = "warn",
    status_line: bool = False,
    health: HealthBinding | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (exit 0 after a clean drain) or a fatal hot-path error (exit 2).

    The health server starts first, so /readyz says "not ready" while the model loads and warms up.
    ``health`` is where it serves (none: nowhere); a process under a
    supervisor serves none (the supervisor reads its metrics and readiness).
    """
    set_young_threshold(settings.gc_gen0_threshold)
    metrics = Metrics()
    state = Health(metrics, reader_names(roles), settings.stall_timeout_s, standby=(LANE,))
    server = None
    if health is not None:
        server = HealthServer(
            health.port,
            state.checks,
            lambda: generate_latest(metrics.registry),
            liveness=state.liveness,
            host=health.host,
        ).start()
        log.info("metrics and health on %s:%d (/metrics, /healthz, /readyz)", health.host, server.port)
    runtime = build_runtime(settings, roles, metrics, state)
    state.built(model_warm=True)
    runtime.fatal.subscribe(lambda _exc: state.fatal())
    runtime.lag.start()
    status = None
    if status_line:  # rich, only for a terminal: a role process under a supervisor never loads it
        from pipeline.observability.status import StatusLine

        status = StatusLine(metrics.registry.collect)
        status.start()
    worker = PipelineWorker(
        runtime.app,
        runtime.drain,
        runtime.fatal,
        loglevel=loglevel,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    freeze_startup_heap()
    trimmer = HeapTrimmer().start()
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        trimmer.stop()
        runtime.lag.stop()
        if status is not None:
            status.stop()
        if server is not None:
            server.stop()
    if not runtime.stopped.is_set():
        runtime.drain(timeout_s=5.0)
    if runtime.fatal.error is not None:
        print(f"worker stopped: {runtime.fatal.error}", file=sys.stderr)
        return EXIT_FATAL
    return code
