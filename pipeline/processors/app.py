"""The Faust app: agents are the processors, and their stream items are micro-batches.

Each role (input, inference) has a ``BatchReader`` thread that reads its topics with a Kafka client in a
consumer group of its own and sends each batch into a bounded ``app.channel()``; the role's agent iterates
that channel and runs its stage on the batch. Faust's own consumer only follows the control topic (a Faust
app needs one topic subscription), so its per-event machinery stays off the hot topics.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faust
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from pipeline.config import Settings
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.processors.batch import Batch, BatchPolicy
from pipeline.processors.gc_tuning import freeze_startup_heap, set_young_threshold
from pipeline.processors.offsets import OffsetTracker
from pipeline.processors.reader import BatchReader
from pipeline.processors.retry import RetryPolicy
from pipeline.processors.writer import OutputWriter

log = logging.getLogger("pipeline.app")

EXIT_FATAL = 2


class Stage(Protocol):
    """What an agent runs per batch: write every record's outputs with the batch's ticket, then seal it."""

    role: str

    async def process(self, batch: Batch) -> None: ...


@dataclass
class RoleSpec:
    role: str
    topics: Sequence[str]
    stage: Stage
    tracker: OffsetTracker
    priority_topics: Sequence[str] = ()
    item_size: Callable[[], int] | None = None  # the stage's wish for the reader's N (None: the policy's)


@dataclass
class HotPath:
    """Readers, writer and tracker of one worker, and the way to stop them without losing anything."""

    settings: Settings
    writer: OutputWriter
    roles: list[RoleSpec] = field(default_factory=list)
    readers: list[BatchReader] = field(default_factory=list)
    fatal: BaseException | None = None
    provider: str = "-"
    roles_built: bool = False
    on_fatal: Callable[[BaseException], None] | None = None
    stopped: threading.Event = field(default_factory=threading.Event)

    def mark_fatal(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
            log.critical("stopping the worker: %s", exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def stop_readers(self) -> None:
        for reader in self.readers:
            reader.stop()

    def drain(self, timeout_s: float = 9.0) -> None:
        """Stop reading, let in-flight batches finish, commit, flush. Blocking: call off the loop."""
        if self.stopped.is_set():
            return
        self.stop_readers()
        for reader in self.readers:
            reader.join(timeout=timeout_s)
        left = self.writer.close(timeout_s=2.0)
        if left:
            log.warning("%d output(s) still unacknowledged at shutdown; their inputs stay uncommitted", left)
        self.stopped.set()

    def readiness(self) -> dict[str, bool]:
        """What /readyz reports: connected, partitions assigned, model loaded and warmed up."""
        return {
            "connected": self.roles_built,
            "partitions_assigned": bool(self.readers) and all(r.ready.is_set() for r in self.readers),
            "model_warm": self.roles_built and self.fatal is None,
        }

    @property
    def ready(self) -> bool:
        return all(self.readiness().values())


def faust_broker_url(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def faust_credentials(settings: Settings) -> Any:
    """Faust (aiokafka) speaks for itself to the broker for the control topic: give it the same security."""
    sec = settings.security
    if sec.security_protocol == "PLAINTEXT":
        return None
    import ssl

    context = None
    if sec.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=sec.ssl_ca_location)
        if sec.ssl_certificate_location and sec.ssl_key_location:
            password = sec.ssl_key_password.get_secret_value() if sec.ssl_key_password else None
            context.load_cert_chain(sec.ssl_certificate_location, sec.ssl_key_location, password)
    if sec.security_protocol.startswith("SASL"):
        password = sec.sasl_password.get_secret_value() if sec.sasl_password else ""
        return faust.SASLCredentials(
            username=sec.sasl_username or "",
            password=password,
            ssl_context=context,
            mechanism=sec.sasl_mechanism or "PLAIN",
        )
    return faust.SSLCredentials(context)


def build_app(settings: Settings, roles: list[RoleSpec], hot_path: HotPath, datadir: Path | None = None) -> faust.App:
    app = faust.App(
        f"{settings.group}.faust",
        broker=faust_broker_url(settings.bootstrap_servers),
        broker_credentials=faust_credentials(settings),
        datadir=str(datadir or Path(tempfile.gettempdir()) / f"pipeline-faust-{settings.group}"),
        web_enabled=False,
        consumer_auto_offset_reset="latest",
        producer_acks=-1,
        topic_partitions=1,
        topic_replication_factor=settings.replication_factor,
    )
    control = app.topic(settings.topics.control, value_serializer="raw", key_serializer="raw")

    @app.agent(control, name="control")
    async def control_agent(stream: Any) -> None:
        async for _ in stream:  # nothing is sent here yet; the subscription keeps Faust's conductor happy
            pass

    for spec in roles:
        channel = BatchChannel(app, maxsize=2)
        flow = _Flow()
        _install_agent(app, channel, spec.stage, hot_path, flow)
        _install_reader_task(app, channel, spec, hot_path, flow)
    return app


class BatchChannel(faust.Channel):
    """The hand-off channel of a role: an ``app.channel()`` that Faust's own rebalances cannot empty.

    Faust treats a channel's items as its own consumer's events. When the Faust app's group rebalances (a
    worker, or a role process, joining or leaving) it clears every agent's channel queue, and its stream
    skips any event sent under an earlier consumer generation or while its flow is suspended: both fine
    for records its consumer would fetch again, but our items are batches read by our own consumers,
    whose tickets stay open until processed. A batch lost that way was never committed past, so its
    partitions stalled until the next restart. So a batch goes onto the queue as a plain value (``put``,
    not ``send``: the stream yields it with no generation check) and the queue has flow control of its own,
    which Faust never suspends or clears; the bounded queue is still the backpressure.
    """

    @property
    def queue(self) -> Any:
        if self._queue is None:
            self._queue = ThrowableQueue(
                maxsize=self.maxsize or 0,
                flow_control=FlowControlEvent(initially_suspended=False),
                clear_on_resume=False,
            )
        return self._queue

    async def hand_over(self, batch: Batch) -> None:
        """Give the batch to the agent iterating this channel; waits while its queue is full."""
        await self.put(batch)  # type: ignore[arg-type]


class _Flow:
    """Batches handed to a role's agent and batches it finished. Each count has one writer (the reader
    thread, the event loop), so reading both from the reader thread needs no lock."""

    def __init__(self) -> None:
        self.handed = 0
        self.finished = 0

    def idle(self) -> bool:
        return self.finished >= self.handed


def _install_agent(app: faust.App, channel: BatchChannel, stage: Stage, hot_path: HotPath, flow: _Flow) -> None:
    async def agent(stream: Any) -> None:
        async for batch in stream:
            try:
                if not batch.ticket.live:
                    continue  # its partitions were revoked or rewound before it started
                await stage.process(batch)
            except Exception as exc:  # never let a crashing agent skip its batch: rewind it instead
                log.exception("%s agent: batch %d raised; it will be rewound", stage.role, batch.ticket.id)
                batch.ticket.tracker.fail(batch.ticket, exc)
            finally:
                flow.finished += 1

    agent.__name__ = f"{stage.role}_agent"
    app.agent(channel, name=f"{stage.role}_agent")(agent)


def _install_reader_task(app: faust.App, channel: BatchChannel, spec: RoleSpec, hot_path: HotPath, flow: _Flow) -> None:
    settings = hot_path.settings

    async def start_reader() -> None:
        loop = asyncio.get_running_loop()
        while channel.subscriber_count == 0:  # a batch sent before the agent subscribes would vanish
            await asyncio.sleep(0.01)

        def deliver(batch: Batch) -> bool:
            """Blocks while the channel is full: that is the backpressure that bounds memory."""
            flow.handed += 1  # before the hand-over: the agent may finish it before the send returns here
            try:
                future = asyncio.run_coroutine_threadsafe(channel.hand_over(batch), loop)
            except RuntimeError:  # the loop is closed
                return False
            while True:
                try:
                    future.result(timeout=0.5)
                    return True
                except FutureTimeout:
                    if reader.stopping:
                        # If it arrived after all, its ticket is dead by now and the agent skips it.
                        future.cancel()
                        return False
                except Exception:  # cancelled with the loop
                    return False

        overrides: dict[str, Any] = {
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": settings.session_timeout_ms,
            "max.poll.interval.ms": max(60_000, settings.session_timeout_ms),
        }
        if settings.worker_id:
            overrides["group.instance.id"] = f"{settings.worker_id}.{spec.role}"
        reader = BatchReader(
            spec.role,
            consumer_config(settings, f"{settings.group}.{spec.role}", **overrides),
            spec.topics,
            BatchPolicy(
                settings.batch_size if spec.role != "input" else settings.input_batch_size, settings.batch_max_wait_ms
            ),
            spec.tracker,
            deliver,
            priority_topics=spec.priority_topics,
            size_hint=spec.item_size,
            agent_idle=flow.idle,
            on_fatal=hot_path.mark_fatal,
            drain_timeout_s=settings.drain_timeout_s,
        )
        hot_path.readers.append(reader)
        reader.start()

    start_reader.__name__ = f"{spec.role}_reader"
    app.task(start_reader)


def new_hot_path(settings: Settings) -> HotPath:
    retry = RetryPolicy(max_attempts=settings.retry_max_attempts, base_delay_s=settings.retry_base_delay_ms / 1000)
    writer = OutputWriter(producer_config(settings), retry)
    hot_path = HotPath(settings, writer)
    writer._on_fatal = hot_path.mark_fatal
    return hot_path


class PipelineWorker(faust.Worker):
    """A Faust worker that drains the hot path before Faust stops its services."""

    def __init__(self, app: faust.App, hot_path: HotPath, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.hot_path = hot_path
        self.spinner = None  # no terminal animation in logs and pipes

    async def _stop_on_signal(self, sig: signal.Signals) -> None:
        log.info("%s: draining the hot path", sig.name)
        await asyncio.get_running_loop().run_in_executor(None, self.hot_path.drain)
        await super()._stop_on_signal(sig)

    def request_stop(self) -> None:
        """From any thread: stop as on SIGTERM (used when the hot path turns fatal)."""
        self.loop.call_soon_threadsafe(self._schedule_shutdown, signal.SIGTERM)


@dataclass(frozen=True)
class HealthBinding:
    """Where a worker process serves /metrics, /healthz and /readyz. A supervised process binds a free
    loopback port and reports it (``on_bound``) to its supervisor, which answers on the configured one."""

    port: int
    host: str = "0.0.0.0"
    on_bound: Callable[[int], None] | None = None


def run_worker(
    settings: Settings,
    make_roles: Callable[[HotPath], list[RoleSpec]],
    loglevel: str = "warn",
    status_line: bool = False,
    health: HealthBinding | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (exit 0 after a clean drain) or a fatal hot-path error (exit 2).

    The health server starts first, so /readyz says "not ready" while the model loads and warms up.
    ``health`` defaults to ``metrics_port`` on all interfaces (none when it is 0).
    """
    from pipeline.observability.http import HealthServer
    from pipeline.observability.lag import LagMonitor
    from pipeline.observability.status import StatusLine

    set_young_threshold(settings.gc_gen0_threshold)
    hot_path = new_hot_path(settings)
    if health is None and settings.metrics_port:
        health = HealthBinding(settings.metrics_port)
    server = None
    if health is not None:
        server = HealthServer(health.port, hot_path.readiness, host=health.host).start()
        if health.on_bound is not None:
            health.on_bound(server.port)
        else:
            log.info("metrics and health on :%d (/metrics, /healthz, /readyz)", server.port)
    hot_path.roles = make_roles(hot_path)
    hot_path.roles_built = True
    app = build_app(settings, hot_path.roles, hot_path)
    lag = LagMonitor(
        settings,
        {f"{settings.group}.{spec.role}": [*spec.topics, *spec.priority_topics] for spec in hot_path.roles},
    )
    lag.start()
    status = StatusLine(lambda: hot_path.provider, lambda: lag.total() if lag.latest else None) if status_line else None
    if status is not None:
        status.start()
    worker = PipelineWorker(
        app, hot_path, loglevel=loglevel, quiet=True, redirect_stdouts=False, override_logging=False
    )
    hot_path.on_fatal = lambda _exc: worker.request_stop()
    freeze_startup_heap()
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        lag.stop()
        if status is not None:
            status.stop()
        if server is not None:
            server.stop()
    if not hot_path.stopped.is_set():
        hot_path.drain(timeout_s=5.0)
    if hot_path.fatal is not None:
        print(f"worker stopped: {hot_path.fatal}", file=sys.stderr)
        return EXIT_FATAL
    return code
