"""What ``/readyz`` and ``/healthz`` report for one worker process, kept as state and published as gauges.

Readiness (``/readyz``) is a set of checks, each changed when something happens: the broker answers or
stops answering, a reader gains or loses its partitions (the priority lane's reader, which may be left
without any when the workers outnumber its partitions, does not count), the model is warm (or the worker
turned fatal), a reader holds its partitions (a batch read again after a backoff, the model's circuit open),
a reader has an assigned partition the client never started reading (``fetching``, pipeline/kafka/starts.py).

Liveness (``/healthz``) fails when the hot path has stopped making progress with work pending and no
reason it knows of: a role has batches in flight, holds nothing on purpose, and nothing was committed for
``stall_timeout_s``; or a role has had a partition that never started for ``stall_timeout_s`` after it
was found so and assigned again. A worker waiting out a broker outage or an open circuit is alive but not
ready; a worker wedged by a fault nobody foresaw is not alive, so its orchestrator restarts it.

Every change is published at once as gauges (``pipeline_ready_check{check}``, ``pipeline_ready``, and per
role the last progress time, work pending and holding), so a supervisor running the roles as processes of
their own computes both answers for every process from the multiprocess metrics it serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from pipeline.observability.metrics import Metrics

CHECKS = ("connected", "partitions_assigned", "model_warm", "flowing", "fetching")


def stalled(
    last_progress: float, work_pending: bool, holding: bool, now: float, timeout_s: float, unstarted_since: float = 0.0
) -> bool:
    """The liveness rule, one role at a time: work pending, nothing held on purpose, no progress for long;
    or a partition found never started (``unstarted_since``, 0 for none) that has not started for long."""
    wedged = work_pending and not holding and now - last_progress > timeout_s
    return wedged or (unstarted_since > 0 and now - unstarted_since > timeout_s)


class Health:
    def __init__(
        self, metrics: Metrics, roles: Iterable[str], stall_timeout_s: float = 120.0, standby: Iterable[str] = ()
    ) -> None:
        self._metrics = metrics
        self._standby = frozenset(standby)
        self._lock = threading.Lock()
        self.stall_timeout_s = stall_timeout_s
        self._roles = list(roles)
        self._model_warm = False
        self._built = False
        self._assigned = dict.fromkeys(self._roles, 0)
        self._connected = dict.fromkeys(self._roles, True)
        self._holding: dict[str, str | None] = dict.fromkeys(self._roles)
        self._work = dict.fromkeys(self._roles, False)
        self._unstarted: dict[str, float | None] = dict.fromkeys(self._roles)
        now = time.time()
        self._progress = dict.fromkeys(self._roles, now)
        self._publish()
        for role in self._roles:
            self._publish_role(role)

    # -- changes, from any thread ---------------------------------------------------------------------

    def built(self, model_warm: bool) -> None:
        """The runtime is built: clients made, the model (if any) loaded and warmed up."""
        with self._lock:
            self._built = True
            self._model_warm = model_warm
            self._publish()

    def fatal(self) -> None:
        with self._lock:
            self._model_warm = False
            self._publish()

    def assignment(self, role: str, partitions: int) -> None:
        with self._lock:
            self._assigned[role] = partitions
            self._publish()

    def connection(self, role: str, ok: bool) -> None:
        with self._lock:
            if self._connected.get(role) == ok:
                return
            self._connected[role] = ok
            self._publish()

    def holding(self, role: str, reason: str | None) -> None:
        with self._lock:
            if self._holding.get(role) == reason:
                return
            self._holding[role] = reason
            self._publish()
            self._publish_role(role)

    def unstarted(self, role: str, since: float | None) -> None:
        """Since when (wall clock) the role has had an assigned partition found never started, or None."""
        with self._lock:
            if self._unstarted.get(role) == since:
                return
            self._unstarted[role] = since
            self._publish()
            self._publish_role(role)

    def progress(self, role: str) -> None:
        """Something was committed: the hot path moves."""
        now = time.time()
        with self._lock:
            self._progress[role] = now
        self._metrics.last_progress.labels(role).set(now)

    def work(self, role: str, pending: bool) -> None:
        """Whether the role has batches in flight; the progress clock starts when work appears."""
        with self._lock:
            if self._work.get(role) == pending:
                return
            self._work[role] = pending
            if pending:
                self._progress[role] = time.time()
            self._publish_role(role)

    # -- answers --------------------------------------------------------------------------------------

    def checks(self) -> dict[str, bool]:
        with self._lock:
            return self._checks_locked()

    @property
    def ready(self) -> bool:
        return all(self.checks().values())

    def liveness(self) -> dict[str, bool]:
        """Per role: True while it is not stalled (see the module docstring)."""
        now = time.time()
        with self._lock:
            return {
                role: not stalled(
                    self._progress[role],
                    self._work[role],
                    self._holding[role] is not None,
                    now,
                    self.stall_timeout_s,
                    self._unstarted[role] or 0.0,
                )
                for role in self._roles
            }

    def holding_reasons(self) -> dict[str, str]:
        with self._lock:
            return {role: reason for role, reason in self._holding.items() if reason is not None}

    def _checks_locked(self) -> dict[str, bool]:
        return {
            "connected": self._built and all(self._connected.values()),
            "partitions_assigned": all(n > 0 for r, n in self._assigned.items() if r not in self._standby),
            "model_warm": self._model_warm,
            "flowing": all(reason is None for reason in self._holding.values()),
            "fetching": all(since is None for since in self._unstarted.values()),
        }

    def _publish(self) -> None:
        checks = self._checks_locked()
        for name, ok in checks.items():
            self._metrics.ready_check.labels(name).set(1 if ok else 0)
        self._metrics.ready.set(1 if all(checks.values()) else 0)

    def _publish_role(self, role: str) -> None:
        self._metrics.work_pending.labels(role).set(1 if self._work[role] else 0)
        self._metrics.holding.labels(role).set(0 if self._holding[role] is None else 1)
        self._metrics.last_progress.labels(role).set(self._progress[role])
        self._metrics.unstarted_since.labels(role).set(self._unstarted[role] or 0.0)
