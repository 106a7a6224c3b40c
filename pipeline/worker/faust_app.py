"""The Faust glue, and the only module that imports Faust: agents are the processors, and their stream
items are micro-batches.

Each role has a ``BatchReader`` thread that reads its topics with a Kafka client in a consumer group of its
own and hands each batch over (:class:`FaustHandOff`) to the role's agent, which runs its stage on the
batch and gives the stage's records to the one emitter. Faust's own consumer only follows the control
topic (a Faust app needs one topic subscription), so its per-event machinery stays off the hot topics.
Swapping Faust for another runner means rewriting this module alone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from pipeline.config import Settings
from pipeline.kafka.batching import Batch
from pipeline.kafka.clients import ssl_context
from pipeline.kafka.offsets import Ticket
from pipeline.kafka.reader import BatchReader
from pipeline.kafka.records import OutRecord
from pipeline.worker.fatal import FatalLatch

log = logging.getLogger("pipeline.app")

Process = Callable[[Batch], Awaitable[list[OutRecord]]]
Emit = Callable[[list[OutRecord], Ticket], None]


def faust_broker_url(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def faust_credentials(settings: Settings) -> Any:
    """Faust (aiokafka) speaks for itself to the broker for the control topic: give it the same security."""
    sec = settings.security
    if sec.security_protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if sec.security_protocol in ("SSL", "SASL_SSL") else None
    if sec.security_protocol.startswith("SASL"):
        password = sec.sasl_password.get_secret_value() if sec.sasl_password else ""
        return faust.SASLCredentials(
            username=sec.sasl_username or "",
            password=password,
            ssl_context=context,
            mechanism=sec.sasl_mechanism or "PLAIN",
        )
    return faust.SSLCredentials(context)


def new_app(settings: Settings, datadir: Path | None = None) -> faust.App:
    """The worker's Faust app, subscribed to the control topic only; roles are added with :func:`add_role`.

    Faust's own consumer group stays off the hot path's critical path: the readers start with the agents,
    not after Faust's first rebalance (which, after a crash, waits out the dead member's session). Its
    consumer is not made a static member: aiokafka's static members took ten seconds to stop.
    """
    app = faust.App(
        f"{settings.group}.faust",
        broker=faust_broker_url(settings.bootstrap_servers),
        broker_credentials=faust_credentials(settings),
        broker_session_timeout=settings.session_timeout_ms / 1000.0,
        datadir=str(datadir or Path(tempfile.gettempdir()) / f"pipeline-faust-{settings.group}"),
        web_enabled=False,
        consumer_auto_offset_reset="latest",
        producer_acks=-1,
        topic_partitions=1,
        # `pipeline worker` resolves the cluster's replication first; Settings built without it get 1.
        topic_replication_factor=settings.replication_factor or 1,
    )
    control = app.topic(settings.topics.control, value_serializer="raw", key_serializer="raw")

    @app.agent(control, name="control")
    async def control_agent(stream: Any) -> None:
        async for _ in stream:  # nothing is sent here yet; the subscription keeps Faust's conductor happy
            pass

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

    def hand_over(self, batch: Batch) -> None:
        """Give the batch to the agent iterating this channel, on the channel's event loop. It never
        waits: the hand-off's slots bound what is queued, so the queue's own bound is not asked."""
        root = self._root if self._root is not None else self
        for subscriber in root._subscribers:
            subscriber.queue.force_put_nowait(batch)


class FaustHandOff:
    """A reader's way into its agent: a :class:`BatchChannel`, slots that bound the batches handed over and
    not yet finished (the backpressure that bounds memory: ``maxsize`` queued and one in hand), and counts of
    the batches handed over and finished. Each count has one writer (the reader thread, the event loop), so
    the reader thread reads both without a lock.

    A hand-over is one callback scheduled on the loop, and the reader goes on reading: it waits only while
    every slot is taken. Waiting for the loop to take each batch cost a wake-up of the reader per batch, a
    task and a cross-thread future, which a stream's small batches paid per few events (bench/README.md).
    """

    def __init__(self, app: faust.App, maxsize: int = 2) -> None:
        self.channel = BatchChannel(app, maxsize=maxsize)
        self.handed = 0
        self.finished = 0
        self._slots = threading.Semaphore(maxsize + 1)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the agent runs on; set by the reader task before the reader starts."""
        self._loop = loop

    def idle(self) -> bool:
        return self.finished >= self.handed

    def waiting(self) -> int:
        """Batches handed over beyond the one the agent has in hand (the agent takes the next as it
        finishes one, so at most one is in hand)."""
        return max(0, self.handed - self.finished - 1)

    def put(self, batch: Batch, stopping: Callable[[], bool]) -> bool:
        """Blocks while every slot is taken; False when ``stopping()`` turned true first or the loop is gone
        (the batch was not handed over)."""
        if self._loop is None:
            return False
        while not self._slots.acquire(timeout=0.5):
            if stopping():
                return False
        self.handed += 1  # before the hand-over: the agent may finish it before the put returns here
        try:
            self._loop.call_soon_threadsafe(self.channel.hand_over, batch)
        except RuntimeError:  # the loop is closed
            self.handed -= 1
            self._slots.release()
            return False
        return True

    def done(self) -> None:
        """The agent finished a batch (processed, failed or skipped): its slot is free. On the loop."""
        self.finished += 1
        self._slots.release()


def add_role(
    app: faust.App, role: str, handoff: FaustHandOff, process: Process, emit: Emit, reader: BatchReader
) -> None:
    """The role's agent: it starts the role's reader as soon as it listens (not when Faust's own consumer
    group has settled), then iterates the hand-off, runs the stage and emits its records."""
    tasks: set[asyncio.Task[None]] = set()

    async def start_reader() -> None:
        while handoff.channel.subscriber_count == 0:  # a batch sent before the agent subscribes would vanish
            await asyncio.sleep(0.01)
        handoff.bind(asyncio.get_running_loop())
        if reader.ident is None and not reader.stopping:  # never started (a thread starts once)
            reader.start()

    async def agent(stream: Any) -> None:
        if not tasks:
            task = asyncio.ensure_future(start_reader())
            tasks.add(task)  # kept: the loop holds tasks weakly
        async for batch in stream:
            ticket = batch.ticket
            try:
                if not ticket.live:
                    continue  # its partitions were revoked or rewound before it started
                emit(await process(batch), ticket)
            except Exception as exc:  # the cause is outside the events: read the batch again later
                log.warning("%s agent: batch %d not processed (%s: %s)", role, ticket.id, type(exc).__name__, exc)
                log.debug("%s agent: batch %d", role, ticket.id, exc_info=exc)
                ticket.tracker.fail(ticket, exc)
            finally:
                handoff.done()

    agent.__name__ = f"{role}_agent"
    app.agent(handoff.channel, name=f"{role}_agent")(agent)


class PipelineWorker(faust.Worker):
    """A Faust worker that drains the hot path before Faust stops its services, and stops as on SIGTERM
    when the hot path turns fatal."""

    def __init__(self, app: faust.App, drain: Callable[[], None], fatal: FatalLatch, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._drain = drain
        self.spinner = None  # no terminal animation in logs and pipes
        fatal.subscribe(lambda _exc: self.request_stop())

    async def _stop_on_signal(self, sig: signal.Signals) -> None:
        log.info("%s: draining the hot path", sig.name)
        await asyncio.get_running_loop().run_in_executor(None, self._drain)
        await super()._stop_on_signal(sig)

    def request_stop(self) -> None:
        """From any thread: stop as on SIGTERM."""
        self.loop.call_soon_threadsafe(self._schedule_shutdown, signal.SIGTERM)
