"""What ``/readyz`` reports for one worker process, kept as state and published as gauges.

Each check changes when something happens (the roles are built, a reader gets its partitions, the worker
turns fatal) and is published at once as ``pipeline_ready_check{check}`` and ``pipeline_ready``, so that a
supervisor running the roles as processes of their own reads every process's readiness from the same
multiprocess metrics it serves, without asking each process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from pipeline.observability.metrics import Metrics

CHECKS = ("connected", "partitions_assigned", "model_warm")


class Health:
    def __init__(self, metrics: Metrics, roles: Iterable[str]) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._checks = dict.fromkeys(CHECKS, False)
        self._assigned = dict.fromkeys(roles, False)
        self._publish()

    def set(self, check: str, ok: bool) -> None:
        with self._lock:
            if check not in self._checks:
                raise KeyError(check)
            self._checks[check] = ok
            self._publish()

    def assigned(self, role: str) -> None:
        """A role's reader got partitions for the first time."""
        with self._lock:
            self._assigned[role] = True
            self._checks["partitions_assigned"] = all(self._assigned.values())
            self._publish()

    def checks(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._checks)

    @property
    def ready(self) -> bool:
        return all(self.checks().values())

    def _publish(self) -> None:
        for name, ok in self._checks.items():
            self._metrics.ready_check.labels(name).set(1 if ok else 0)
        self._metrics.ready.set(1 if all(self._checks.values()) else 0)
