"""The reader, writer and tracker on the real broker, without Faust: the commit rule in action."""

from __future__ import annotations

import gc
import queue
import threading
import time
import weakref

from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.batching import Batch, BatchPolicy
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.kafka.offsets import OffsetTracker
from pipeline.kafka.reader import BatchReader
from pipeline.kafka.records import OutRecord
from pipeline.kafka.retry import RetryPolicy
from pipeline.kafka.topics import TopicSpec, create_topics
from pipeline.kafka.writer import OutputWriter
from pipeline.observability.metrics import Metrics
from tests.conftest import committed_total, unique_name


class _QueueHandOff:
    """Stands in for the Faust hand-off: a plain bounded queue."""

    def __init__(self, batches: queue.Queue[Batch]) -> None:
        self.batches = batches

    def put(self, batch: Batch, stopping: object) -> bool:
        self.batches.put(batch)
        return True

    def idle(self) -> bool:
        return self.batches.empty()

    def waiting(self) -> int:
        return self.batches.qsize()


def _topics(settings: Settings, *names: str, partitions: int = 2) -> None:
    create_topics(connect_admin(settings), [TopicSpec(n, n, partitions, 1) for n in names])


def _fill(settings: Settings, topic: str, n: int) -> None:
    producer = Producer(producer_config(settings))
    for i in range(n):
        producer.produce(topic, value=str(i).encode(), key=str(i % 7).encode())
    assert producer.flush(30) == 0


def _committed(settings: Settings, group: str, topic: str, partitions: int = 2) -> int:
    return committed_total(settings, group, topic, partitions)


def _count(settings: Settings, topic: str, partitions: int = 2) -> int:
    consumer = Consumer(consumer_config(settings, unique_name("count")))
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


class _Processor(threading.Thread):
    """Stands in for an agent: copies every record to ``out`` and fails chosen batches once."""

    def __init__(
        self,
        batches: queue.Queue[Batch],
        writer: OutputWriter,
        tracker: OffsetTracker,
        out: str,
        fail_offsets: set[int],
    ) -> None:
        super().__init__(daemon=True)
        self.batches, self.writer, self.tracker, self.out = batches, writer, tracker, out
        self.fail_offsets = set(fail_offsets)
        self.stop = threading.Event()
        self.failed = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                batch = self.batches.get(timeout=0.1)
            except queue.Empty:
                continue
            if not batch.ticket.live:
                continue
            hit = {m.offset() for m in batch.messages if m.partition() == 0} & self.fail_offsets
            if hit:  # processing "raised": nothing of it may be committed
                self.fail_offsets -= hit
                self.failed += 1
                self.tracker.fail(batch.ticket, RuntimeError(f"boom at {sorted(hit)}"))
                continue
            for m in batch.messages:
                self.writer.send(self.out, m.value(), m.key(), ticket=batch.ticket)
            self.tracker.seal(batch.ticket)


def _reader(
    settings: Settings, group: str, topic: str, tracker: OffsetTracker, batches: queue.Queue[Batch], **kwargs: object
) -> BatchReader:
    return BatchReader(
        "test",
        consumer_config(settings, group, **{"session.timeout.ms": 10_000}),
        [topic],
        BatchPolicy(100, 20),
        tracker,
        _QueueHandOff(batches),
        Metrics(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_failed_batch_is_rewound_and_every_record_still_gets_its_output(pipeline_settings: Settings) -> None:
    src, out, group = unique_name("src"), unique_name("out"), unique_name("g")
    _topics(pipeline_settings, src, out)
    n = 3000
    _fill(pipeline_settings, src, n)
    tracker = OffsetTracker()
    batches: queue.Queue[Batch] = queue.Queue(maxsize=2)
    writer = OutputWriter(producer_config(pipeline_settings), Metrics())
    proc = _Processor(batches, writer, tracker, out, fail_offsets={5, 700})
    reader = _reader(pipeline_settings, group, src, tracker, batches)
    proc.start()
    reader.start()
    deadline = time.monotonic() + 60
    while _committed(pipeline_settings, group, src) < n and time.monotonic() < deadline:
        time.sleep(0.5)
    reader.stop()
    reader.join(15)
    proc.stop.set()
    writer.close()
    assert reader.error is None
    assert proc.failed == 2 and reader.stats.rewinds >= 2
    assert _committed(pipeline_settings, group, src) == n
    # at least once: every record has an output; the rewound ones may have more than one
    assert _count(pipeline_settings, out) >= n


def test_never_commits_past_an_output_the_broker_did_not_acknowledge(pipeline_settings: Settings) -> None:
    """Outputs that cannot be written (their topic is missing) fail the batch; it is read again after a
    growing backoff, never committed past, and the reader never stops for it."""
    src, group = unique_name("src"), unique_name("g")
    _topics(pipeline_settings, src)
    _fill(pipeline_settings, src, 50)
    missing_topic = unique_name("missing")  # auto-creation is off: every produce here fails
    tracker = OffsetTracker()
    batches: queue.Queue[Batch] = queue.Queue(maxsize=2)
    writer = OutputWriter(
        producer_config(pipeline_settings, **{"message.timeout.ms": 500}),
        Metrics(),
        RetryPolicy(max_attempts=2, base_delay_s=0.05),
    )
    fatal: list[BaseException] = []
    proc = _Processor(batches, writer, tracker, missing_topic, fail_offsets=set())
    reader = _reader(
        pipeline_settings,
        group,
        src,
        tracker,
        batches,
        on_fatal=fatal.append,
        backoff=RetryPolicy(base_delay_s=0.1, max_delay_s=1.0, jitter=0.0),
    )
    proc.start()
    reader.start()
    time.sleep(6)
    try:
        assert reader.is_alive() and not fatal  # it waits for the cause to go, it does not stop
        assert reader.stats.rewinds >= 2 and writer.stats.lost > 0
        assert _committed(pipeline_settings, group, src) == 0
    finally:
        reader.stop()
        reader.join(15)
        proc.stop.set()
        writer.close(timeout_s=1)


def test_a_written_batch_is_freed_once_acknowledged_without_the_cyclic_collector(pipeline_settings: Settings) -> None:
    """Once the broker has acknowledged a batch's outputs, its ticket, the outputs and their source records
    are freed by reference counting. A reference cycle between the ticket and the writer's delivery
    callback kept them until the cyclic collector ran: under a backlog, some 50,000 outputs and source
    records per role."""
    out = unique_name("out")
    _topics(pipeline_settings, out)
    tracker = OffsetTracker()
    writer = OutputWriter(producer_config(pipeline_settings), Metrics())
    gc.disable()
    try:
        ticket = tracker.open({("src", 0): (0, 99)})
        freed = weakref.ref(ticket)
        writer.emit([OutRecord(out, b"%d" % i, b"k") for i in range(100)], ticket)
        del ticket
        assert tracker.wait_idle([("src", 0)], timeout_s=30)
        assert tracker.take_commits() == {("src", 0): 100}
        writer.close()
        assert freed() is None
    finally:
        gc.enable()


def _wakeups(thread: threading.Thread) -> int:
    """How often the thread has been switched out so far (each wait that slept counts one)."""
    assert thread.native_id is not None
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        return sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)


def test_an_idle_reader_and_writer_sleep_until_records_come(pipeline_settings: Settings) -> None:
    """Idle threads that wake every few milliseconds take cores from the model's intra-op threads (MiniLM
    lost a quarter of its speed to them on 2 cores): idle, the reader and writer block in their clients'
    polls; the first records after the quiet are still processed and committed at once."""
    src, out, group = unique_name("src"), unique_name("out"), unique_name("g")
    _topics(pipeline_settings, src, out)
    tracker = OffsetTracker()
    batches: queue.Queue[Batch] = queue.Queue(maxsize=2)
    writer = OutputWriter(producer_config(pipeline_settings), Metrics())
    proc = _Processor(batches, writer, tracker, out, fail_offsets=set())
    reader = _reader(pipeline_settings, group, src, tracker, batches)
    proc.start()
    reader.start()
    try:
        assert reader.ready.wait(30)
        time.sleep(0.5)
        before = _wakeups(reader), _wakeups(writer._poller)
        time.sleep(2.0)
        after = _wakeups(reader), _wakeups(writer._poller)
        # Ticks of W (20 ms) and of the writer's 5 ms would be 100 and 400 in these 2 s; polls of 0.2 s
        # and 0.25 s are about 10 and 8.
        assert after[0] - before[0] < 40, after[0] - before[0]
        assert after[1] - before[1] < 40, after[1] - before[1]
        _fill(pipeline_settings, src, 20)
        deadline = time.monotonic() + 10
        while _committed(pipeline_settings, group, src) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _committed(pipeline_settings, group, src) == 20
        assert _count(pipeline_settings, out) == 20
    finally:
        reader.stop()
        reader.join(15)
        proc.stop.set()
        writer.close()
    assert reader.error is None
