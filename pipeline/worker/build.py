"""The composition root: one function turns ``Settings`` into a worker process's runtime.

Everything the hot path is made of is built here, once, in dependency order, and handed to whoever needs
it at construction: codecs, the model service, hooks, the failure router, the stages, the writer (the one
emitter), one offset tracker, batch policy, reader and hand-off per reader, the Faust app and the lag
monitor. Nothing is set on a part after it is built; the parts talk through what they were given.

A role is what a process runs (input, inference); a reader is one consumer group's share of it. The
inference role has two readers: the bulk topic's and the priority lane's (:mod:`pipeline.kafka.lane`),
each in a group of its own so that each topic's partitions are balanced over the workers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import faust

from pipeline.config import Settings
from pipeline.kafka.batching import Batch, BatchPolicy, ModelPaced
from pipeline.kafka.clients import producer_config
from pipeline.kafka.holds import Gate
from pipeline.kafka.lag import LagMonitor
from pipeline.kafka.lane import LaneSignal
from pipeline.kafka.membership import remove_members
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.reader import BatchReader
from pipeline.kafka.records import OutRecord
from pipeline.kafka.retry import RetryPolicy
from pipeline.kafka.transactions import TransactionalWriter
from pipeline.kafka.writer import OutputWriter, Refused
from pipeline.model.breaker import CircuitBreaker
from pipeline.model.registry import load_registry
from pipeline.observability.health import Health
from pipeline.observability.metrics import Metrics
from pipeline.observability.redact import Redactor
from pipeline.serde import Codecs, ErrorCode, EventCodec, Failure, Stage
from pipeline.stages.failures import FailureRouter
from pipeline.stages.hooks import HookRegistry
from pipeline.stages.input import InputStage
from pipeline.stages.isolation import Isolated
from pipeline.worker.fatal import FatalLatch
from pipeline.worker.faust_app import FaustHandOff, add_role, new_app
from pipeline.worker.readers import LANE, fetch_ahead, reader_config, reader_names

if TYPE_CHECKING:
    from pipeline.model.service import ModelService

log = logging.getLogger("pipeline.worker")


class Processor(Protocol):
    """What an agent runs per batch: the records to write for it (the emitter writes them)."""

    role: str

    async def process(self, batch: Batch) -> list[OutRecord]: ...


def static_members(settings: Settings, readers: Sequence[str]) -> list[tuple[str, str]]:
    """(group, instance id) of each of these readers of a worker with an id: what leaving removes."""
    if not settings.worker_id:
        return []
    return [(f"{settings.group}.{name}", f"{settings.worker_id}.{name}") for name in readers]


def leave_for_good(settings: Settings, readers: Sequence[str]) -> None:
    """Remove a reader's static member once its consumer is closed, so that its partitions go to the other
    workers now rather than after ``session_timeout_ms``; a failure costs only that wait. Each reader
    leaves as soon as it has drained, not when the whole worker has: a group that is rebalancing waits for
    every member it knows of."""
    members = static_members(settings, readers)
    if not members:
        return
    try:
        removals = remove_members(settings, members)
    except Exception as exc:
        log.warning("could not leave the groups (%s: %s); the partitions wait out the session", type(exc).__name__, exc)
        return
    for removal in removals:
        if removal.error is None:
            log.info("left %s for good (member %s)", removal.group, removal.instance_id)
        else:
            log.warning("leaving %s as %s: %s", removal.group, removal.instance_id, removal.error)


@dataclass(frozen=True)
class RoleRuntime:
    name: str
    topics: tuple[str, ...]
    stage: Processor
    tracker: OffsetTracker
    policy: BatchPolicy
    handoff: FaustHandOff
    reader: BatchReader


@dataclass(frozen=True)
class Runtime:
    """A worker process's parts, built by :func:`build_runtime`."""

    settings: Settings
    metrics: Metrics
    health: Health
    fatal: FatalLatch
    writers: tuple[OutputWriter, ...]
    roles: tuple[RoleRuntime, ...]
    models: ModelService | None
    breaker: CircuitBreaker | None
    app: faust.App
    lag: LagMonitor
    stopped: threading.Event

    def drain(self, timeout_s: float = 9.0) -> None:
        """Stop reading, let in-flight batches finish, commit, flush. Blocking: call off the event loop."""
        if self.stopped.is_set():
            return
        if self.breaker is not None:
            self.breaker.close()
        for role in self.roles:
            role.reader.stop()
        for role in self.roles:
            if role.reader.is_alive():
                role.reader.join(timeout=timeout_s)
        left = sum(writer.close(timeout_s=2.0) for writer in self.writers)
        if left:
            log.warning("%d output(s) still unacknowledged at shutdown; their inputs stay uncommitted", left)
        self.stopped.set()


def worker_label(settings: Settings) -> str:
    """What results name as their worker: the configured id, else host and pid (never used for membership)."""
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


def build_runtime(settings: Settings, roles: Sequence[str], metrics: Metrics, health: Health) -> Runtime:
    """Build every part of a worker process that runs ``roles``; the default model is loaded and warmed up
    here, so a worker that cannot serve it fails before it joins any group."""
    fatal = FatalLatch()
    codecs = Codecs.from_settings(settings)
    hooks = HookRegistry.from_paths(
        settings.hooks_pre,
        settings.hooks_post,
        settings.hooks_error,
        observer=metrics.observe_hook,
        deadline_s=settings.hook_timeout_ms / 1000.0 if settings.hook_timeout_ms else None,
    )
    readers = reader_names(roles)
    routers = {name: _router(settings, codecs, metrics, hooks, name) for name in readers}
    writers = _writers(settings, readers, metrics, fatal, _refusals(settings, codecs.request, routers))
    backoff = RetryPolicy(
        base_delay_s=settings.rewind_backoff_ms / 1000, max_delay_s=settings.rewind_backoff_max_ms / 1000
    )
    app = new_app(settings)
    built: list[RoleRuntime] = []
    models: ModelService | None = None
    breaker: CircuitBreaker | None = None

    def backlog(role: str) -> Gate:
        writer = writers[role]
        return lambda: "the writer's backlog is full" if writer.backlogged() else None

    def add(
        name: str,
        topics: Sequence[str],
        stage: Processor,
        policy: BatchPolicy,
        gate: Gate,
        lane: LaneSignal | None = None,
        yields_to: LaneSignal | None = None,
        ahead: int | None = None,
    ) -> None:
        tracker = OffsetTracker()
        handoff = FaustHandOff(app)
        writer = writers[name]
        reader = BatchReader(
            name,
            reader_config(settings, name, ahead),
            topics,
            policy,
            tracker,
            handoff,
            metrics,
            lane=lane,
            yields_to=yields_to,
            health=health,
            gate=gate,
            backoff=backoff,
            on_fatal=fatal.trip,
            drain_timeout_s=settings.drain_timeout_s,
            commit_interval_s=settings.commit_interval_ms / 1000,
            transactions=writer if isinstance(writer, TransactionalWriter) else None,
            after_close=(lambda: leave_for_good(settings, [name])) if settings.leave_on_stop else None,
        )
        isolated = Isolated(stage, routers[name], metrics)
        add_role(app, name, handoff, isolated.process, writer.emit, reader)
        built.append(RoleRuntime(name, tuple(topics), stage, tracker, policy, handoff, reader))

    if "input" in roles:
        registry = load_registry(settings.models_file)
        stage = InputStage(
            codecs.request,
            routers["input"],
            settings.topics.inference,
            settings.topics.inference_priority,
            frozenset(registry.names()),
            settings.model,
            metrics,
        )
        policy = BatchPolicy(settings.input_batch_size, settings.batch_max_wait_ms)
        add("input", [settings.topics.input], stage, policy, backlog("input"))
    if "inference" in roles:
        # Here, not at the top: a process of the input role alone never loads the model runtime (numpy,
        # ONNX Runtime), the largest part of a role's memory.
        from pipeline.model.service import ModelService
        from pipeline.stages.inference import InferenceStage

        models = ModelService.from_settings(settings)  # loads and warms up the default model
        runner = models.runner()
        metrics.publish_model(runner.info.name, runner.info.version, runner.provider)
        service = models
        model_name = runner.info.name
        breaker = CircuitBreaker(
            model_name,
            lambda: service.probe(model_name),
            open_after=settings.breaker_failures,
            backoff_s=settings.breaker_backoff_ms / 1000,
            max_backoff_s=settings.breaker_backoff_max_ms / 1000,
            on_change=lambda state: metrics.circuit_open.labels(model_name).set(1 if state == "open" else 0),
        )
        circuit = breaker
        inference_backlog = backlog("inference")

        def inference_gate() -> str | None:
            return f"the circuit of model {model_name} is open" if circuit.is_open() else inference_backlog()

        # Its records were validated by the input role; the model runtime checks tensors and texts again
        # per event before batching.
        request_codec = EventCodec.from_settings(settings, "request", validate=False)
        inference = InferenceStage(
            request_codec,
            codecs.result,
            models,
            routers["inference"],
            settings.topics.output,
            worker_label(settings),
            metrics,
            breaker,
            hooks=hooks,
            batch_size=settings.batch_size,
        )
        policy = BatchPolicy(
            settings.batch_size,
            settings.batch_max_wait_ms,
            size=ModelPaced(
                settings.batch_size,
                settings.inference_item_budget_ms / 1000.0,
                settings.inference_item_max_events,
                lambda: service.typical_batch_s,
            ),
        )
        lane = LaneSignal()
        ahead = None
        if settings.inference_fetch_ahead_ms:  # else the timed batch would size nothing
            pace = models.warm_pace(settings.batch_size)
            ahead = fetch_ahead(settings, pace)
            log.info(
                "inference reader: fetches ahead up to %s (model %s at %.0f events/s on a warm batch)",
                f"{ahead} events" if ahead is not None else "librdkafka's own count",
                model_name,
                pace,
            )
        add("inference", [settings.topics.inference], inference, policy, inference_gate, yields_to=lane, ahead=ahead)
        lane_stage = dataclasses.replace(inference, failures=routers[LANE], role=LANE)
        add(LANE, [settings.topics.inference_priority], lane_stage, policy, inference_gate, lane=lane)
    lag = LagMonitor(settings, {f"{settings.group}.{r.name}": list(r.topics) for r in built}, metrics)
    distinct = tuple({id(w): w for w in writers.values()}.values())
    return Runtime(
        settings, metrics, health, fatal, distinct, tuple(built), models, breaker, app, lag, threading.Event()
    )


def _writers(
    settings: Settings, readers: Sequence[str], metrics: Metrics, fatal: FatalLatch, refused: Refused
) -> dict[str, OutputWriter]:
    """The readers' writers: one shared by every reader (at least once), or one transactional writer per
    reader (exactly once: a reader's outputs and its group's offsets commit together), its id stable across
    restarts."""
    retry = RetryPolicy(max_attempts=settings.retry_max_attempts, base_delay_s=settings.retry_base_delay_ms / 1000)
    common: dict[str, Any] = {
        "on_fatal": fatal.trip,
        "on_refused": refused,
        "max_in_flight": settings.max_in_flight_outputs,
    }
    if settings.processing_guarantee == "exactly_once":
        return {
            name: TransactionalWriter(
                producer_config(settings),
                metrics,
                transactional_id=f"{settings.group}.{worker_label(settings)}.{name}",
                transaction_timeout_ms=settings.transaction_timeout_ms,
                retry=retry,
                **common,
            )
            for name in readers
        }
    shared = OutputWriter(producer_config(settings), metrics, retry, **common)
    return dict.fromkeys(readers, shared)


def _router(settings: Settings, codecs: Codecs, metrics: Metrics, hooks: HookRegistry, role: str) -> FailureRouter:
    """A role's failure router: its dead letters name the role's consumer group."""
    group = f"{settings.group}.{role}"
    return FailureRouter(
        codecs.error,
        settings.topics.error,
        settings.topics.dead_letter,
        group,
        metrics,
        hooks=hooks,
        redact=Redactor(settings.secret_values()),
    )


def _refusals(settings: Settings, request_codec: EventCodec, routers: dict[str, FailureRouter]) -> Refused:
    """What the writer writes instead of a forward or a result the broker refused for good: the source
    event's error event and dead letter (stage OUTPUT). An error event or a dead letter has nothing to fall
    back to: the writer logs and counts it."""
    unwritable = {settings.topics.error, settings.topics.dead_letter}

    def instead(record: OutRecord, reason: str, too_large: bool) -> list[OutRecord]:
        source = record.source
        if source is None or record.topic in unwritable:
            return []
        reader = {settings.topics.input: "input", settings.topics.inference_priority: LANE}.get(
            source.topic() or "", "inference"
        )
        router = routers.get(reader) or next(iter(routers.values()))
        try:
            event_id = request_codec.decode(source.value()).get("event_id")
        except Exception:  # the event id is a courtesy to the operator; the failure stands without it
            event_id = None
        failure = Failure(
            Stage.OUTPUT,
            ErrorCode.TOO_LARGE if too_large else ErrorCode.OUTPUT_FAILED,
            f"the broker refused the record for {record.topic}: {reason}",
            event_id=event_id,
        )
        return list(router.route(source, failure, None))

    return instead
