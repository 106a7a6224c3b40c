"""Measuring a running design: throughput from a pre-loaded backlog, latency at an offered rate.

Throughput: N requests are on the input topic before the design starts; events/s is N-1 over the time
from the first output to the last, read from the output topic's broker append times (``LogAppendTime``),
the same clock for every design. Meanwhile the bench only polls watermarks, so it takes no CPU from the
design (the broker and the design share two cores).

Latency: with the design running and idle, a generator in this process offers requests at a fixed rate,
``created_at`` set at send time; latency is the receive time of the matching output (by key, the
``event_id``) in a reader process minus ``created_at`` (a pre-loaded backlog gives throughput only).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaException, TopicPartition

from bench.cpu import TICKS_PER_S, process_ticks
from bench.reader import Arrival, read_arrivals
from bench.workload import input_producer, requests_for
from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.clients import consumer_config
from pipeline.ops.collect import Record, read_topic
from pipeline.serde import Codecs, now_millis

SEND_TICK_S = 0.005  # how often the latency generator wakes up to send what has come due


class DesignFailed(RuntimeError):
    """A design exited, or did not produce what it was given in time."""


@dataclass(frozen=True)
class Throughput:
    events: int
    span_s: float  # first output to last output, broker append time
    first_output_s: float  # from the design's start to its first output (start-up, not measured)
    model_s: float = 0.0  # the model's own time over the run, from the results' batch inference_ms

    @property
    def model_busy(self) -> float:
        """The share of the span the model was running: near 1, the design is model-bound and what it
        lacks against the ceiling is the model's own speed on this machine at that moment."""
        return self.model_s / self.span_s if self.span_s > 0 else 0.0

    @property
    def events_per_s(self) -> float:
        return (self.events - 1) / self.span_s if self.span_s > 0 else 0.0


@dataclass(frozen=True)
class LatencyPoint:
    offered_per_s: float
    sent_per_s: float  # what the generator achieved; below offered when it could not keep up
    events: int
    received: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    # CPU of the load's own parts over the window (first send to last receipt), in % of one core: the
    # generator (the bench's process: encoding, producing) and the latency reader (its own process). On a
    # host whose cores the design shares with them, what they take is what the design did not get.
    generator_cpu_pct: float = 0.0
    reader_cpu_pct: float = 0.0
    # The design's own CPU over the same window: in % of one core, and per event offered. At a rate below
    # its maximum a design's batches are smaller than a backlog's, and what each event costs then is what
    # decides where its latency turns up.
    design_cpu_pct: float = 0.0
    design_cpu_us_per_event: float = 0.0
    # The design's peak RSS so far (its processes' high-water marks summed) at the window's end: where in a
    # run its memory peaked, so that designs compare on the work all of them were given.
    peak_rss_mb: float = 0.0
    # Where the point was measured in several windows at its rate: each window's p99, in the order offered
    # (the point's percentiles are then the windows' medians, see ``median_window``).
    p99_windows_ms: tuple[float, ...] = ()


def median_window(points: Sequence[LatencyPoint]) -> LatencyPoint:
    """Several windows offered at one rate, as one point: each percentile is the windows' median, the
    maximum the largest, the counts summed and the CPU shares averaged. One window's p99 moves by a
    hundred milliseconds or more with nothing changed; the median of three says what the design does at
    that rate, and the windows' own p99s are kept beside it."""
    if not points:
        raise ValueError("no windows")
    if len(points) == 1:
        return points[0]

    def median(field: str) -> float:
        return float(np.median([getattr(p, field) for p in points]))

    def mean(field: str) -> float:
        return float(np.mean([getattr(p, field) for p in points]))

    return LatencyPoint(
        offered_per_s=points[0].offered_per_s,
        sent_per_s=min(p.sent_per_s for p in points),
        events=sum(p.events for p in points),
        received=sum(p.received for p in points),
        p50_ms=median("p50_ms"),
        p95_ms=median("p95_ms"),
        p99_ms=median("p99_ms"),
        max_ms=max(p.max_ms for p in points),
        generator_cpu_pct=mean("generator_cpu_pct"),
        reader_cpu_pct=mean("reader_cpu_pct"),
        design_cpu_pct=mean("design_cpu_pct"),
        design_cpu_us_per_event=mean("design_cpu_us_per_event"),
        peak_rss_mb=max(p.peak_rss_mb for p in points),
        p99_windows_ms=tuple(p.p99_ms for p in points),
    )


class Watermarks:
    """End offsets of one topic from one long-lived consumer (a cheap way to wait for N outputs)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer(consumer_config(settings, f"bench-watch-{uuid.uuid4().hex[:8]}"))
        md = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self.partitions = sorted(md.partitions)

    def ends(self, attempts: int = 20) -> dict[int, int]:
        for attempt in range(attempts):
            try:
                return {
                    p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                    for p in self.partitions
                }
            except KafkaException:  # a leader moving, or not elected yet: ask again
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def total(self) -> int:
        return sum(self.ends().values())

    def close(self) -> None:
        self._consumer.close()


def wait_ready(settings: Settings, groups: dict[str, int], alive: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Until each consumer group is stable with its number of members: the design has started, loaded its
    model, joined and been given its partitions (with several members, the rebalances are over)."""
    admin = connect_admin(settings)
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while True:
        if not alive():
            raise DesignFailed("the design exited before it was ready")
        try:
            for group, future in admin.describe_consumer_groups(list(groups), request_timeout=10).items():
                d = future.result()
                seen[group] = f"{d.state.name}, {len(d.members)} members"
        except KafkaException:
            pass
        if all(seen.get(g) == f"STABLE, {n} members" for g, n in groups.items()):
            return
        if time.monotonic() > deadline:
            raise DesignFailed(f"not ready after {timeout_s:.0f} s: {seen}")
        time.sleep(0.2)


def drain_backlog(
    settings: Settings,
    n: int,
    alive: Callable[[], bool],
    started_at: float,
    timeout_s: float,
    at_done: Callable[[], None] | None = None,
) -> Throughput:
    """Wait for ``n`` outputs (``at_done`` is called as soon as they are there), then read their append
    times. ``alive`` says whether the design still runs."""
    marks = Watermarks(settings, settings.topics.output)
    try:
        deadline = time.monotonic() + timeout_s
        while (done := marks.total()) < n:
            if not alive():
                raise DesignFailed(f"the design exited after {done} of {n} outputs")
            if time.monotonic() > deadline:
                raise DesignFailed(f"{done} of {n} outputs after {timeout_s:.0f} s")
            time.sleep(0.05)
        if at_done is not None:
            at_done()
    finally:
        marks.close()
    records = read_topic(settings, settings.topics.output, expected=n, timeout_s=120)
    stamps = sorted(r.timestamp for r in records)
    if len(stamps) < n:
        raise DesignFailed(f"read back {len(stamps)} of {n} outputs")
    return Throughput(
        n, (stamps[-1] - stamps[0]) / 1000.0, stamps[0] / 1000.0 - started_at, _model_s(settings, records)
    )


def _model_s(settings: Settings, records: list[Record]) -> float:
    """Seconds of model time: each result names its batch's inference time and size, so every batch
    counts once (by worker, size and time)."""
    codec = Codecs.from_settings(settings, validate=False).result
    batches: set[tuple[str, int, float]] = set()
    for record in records:
        try:
            result = codec.decode(record.value)
        except Exception:  # not a result: nothing to count
            continue
        batches.add((result["worker_id"], result["batch_size"], result["timings"]["inference_ms"]))
    return sum(ms for _, _, ms in batches) / 1000.0


class ArrivalReader:
    """The reader process (see `reader`), from the output topic's current end offsets on."""

    def __init__(self, settings: Settings) -> None:
        marks = Watermarks(settings, settings.topics.output)
        try:
            offsets = marks.ends()
        finally:
            marks.close()
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=read_arrivals,
            args=(settings.bootstrap_servers, settings.topics.output, offsets, self._queue, self._stop),
            daemon=True,
        )
        self._proc.start()
        if self._queue.get(timeout=60) != "ready":
            raise DesignFailed("the latency reader did not start")

    def collect(self, keys: set[bytes], timeout_s: float) -> dict[bytes, float]:
        """Receive times of ``keys`` (those that arrived within ``timeout_s``)."""
        got: dict[bytes, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(got) < len(keys) and time.monotonic() < deadline:
            try:
                arrivals: list[Arrival] = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            for key, at in arrivals:
                if key in keys and key not in got:
                    got[key] = at
        return got

    @property
    def pid(self) -> int:
        return self._proc.pid or 0

    def cpu_seconds(self) -> float:
        """CPU the reader process has spent (``/proc``), 0 once it is gone."""
        return (process_ticks(self.pid) or 0) / TICKS_PER_S

    def close(self) -> None:
        self._stop.set()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)


class Generator:
    """Offers requests to the input topic at a fixed rate, ``created_at`` set as each one is sent."""

    def __init__(self, settings: Settings, model: str) -> None:
        self.settings = settings
        self.model = model
        self._codec = Codecs.from_settings(settings).request
        self._producer = input_producer(settings)

    def _send(self, request: dict[str, Any]) -> tuple[bytes, int]:
        request["created_at"] = now_millis()
        key = str(request["event_id"]).encode()
        value = self._codec.encode(request)
        while True:
            try:
                self._producer.produce(self.settings.topics.input, value=value, key=key)
                return key, request["created_at"]
            except BufferError:
                self._producer.poll(0.01)

    def warm_up(self, reader: ArrivalReader, n: int = 20) -> None:
        """A few requests through the whole path after the backlog, so that no window pays for idle
        connections, metadata or the producer's id."""
        keys = {self._send(r)[0] for r in requests_for(self.model, n, seed=99)}
        self._producer.flush(30)
        if not reader.collect(keys, timeout_s=60):
            raise DesignFailed("no output for the warm-up requests")

    def offer(
        self,
        reader: ArrivalReader,
        rate: float,
        seconds: float,
        seed: int,
        min_events: int = 100,
        design_cpu: Callable[[], float] | None = None,
    ) -> LatencyPoint:
        """Offer ``rate`` events/s for ``seconds`` (``min_events`` at least); latency per output.
        ``design_cpu``: the design's CPU seconds so far, read at both ends of the window."""
        n = max(min_events, int(rate * seconds))
        requests = requests_for(self.model, n, seed)
        created: dict[bytes, int] = {}
        own_before, reader_before = _own_cpu_s(), reader.cpu_seconds()
        design_before = design_cpu() if design_cpu else 0.0
        started = time.perf_counter()
        i = 0
        while i < n:
            due = min(n, int((time.perf_counter() - started) * rate) + 1)  # all whose send time has come
            while i < due:
                key, at = self._send(requests[i])
                created[key] = at
                i += 1
            self._producer.poll(0)
            if i < n:
                # Wake at most every SEND_TICK_S: pacing event by event woke this process thousands of
                # times a second and took a third of a core from the 2 the designs share. Each event is
                # still stamped as it is sent, so the figures stay exact; the rate is offered in ticks.
                time.sleep(max(SEND_TICK_S, started + i / rate - time.perf_counter()))
        sent_s = time.perf_counter() - started
        self._producer.flush(30)
        got = reader.collect(set(created), timeout_s=max(30.0, 3 * seconds))
        window_s = max(time.perf_counter() - started, 1e-3)
        generator_pct = 100 * (_own_cpu_s() - own_before) / window_s
        reader_pct = 100 * (reader.cpu_seconds() - reader_before) / window_s
        design_s = design_cpu() - design_before if design_cpu else 0.0
        lat = np.array([at * 1000.0 - created[key] for key, at in got.items()]) if got else np.array([np.nan])
        return LatencyPoint(
            offered_per_s=rate,
            sent_per_s=n / sent_s if sent_s > 0 else float(n),
            events=n,
            received=len(got),
            p50_ms=float(np.percentile(lat, 50)),
            p95_ms=float(np.percentile(lat, 95)),
            p99_ms=float(np.percentile(lat, 99)),
            max_ms=float(np.max(lat)),
            generator_cpu_pct=generator_pct,
            reader_cpu_pct=reader_pct,
            design_cpu_pct=100 * design_s / window_s,
            design_cpu_us_per_event=1e6 * design_s / n,
        )


def _own_cpu_s() -> float:
    """This process's CPU seconds, every thread (the generator's producer threads included)."""
    t = os.times()
    return t.user + t.system
