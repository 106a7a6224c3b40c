"""`python -m bench.poison`: what a stream that is half poison costs, against a clean one.

Poison is what other teams may write to the input topic: records that fail decode or validation, four
kinds in turn (garbage bytes; a single-object header whose fingerprint is not ours; a tensor whose bytes
do not match its shape; a tensor past ``max_tensor_elements``). Each becomes an error event and a dead
letter; a clean record (a tiny request) becomes a forward and then a result. Target: a stream where every
other record is poison keeps at least a third of the clean stream's events/s.

Two measurements, each on N clean records and on N records of which every other one is poison:

- ``stage`` (always): the input stage (``InputStage.process`` with its ``FailureRouter``) in this process,
  on batches of ``input_batch_size``: records answered per second, the best of three passes;
- ``worker`` (``--worker``; a broker: ``KAFKA_BOOTSTRAP`` or ``--bootstrap``): a real ``pipeline worker``
  on the tiny model drains a pre-loaded backlog of N records on fresh topics; events/s is N-1 over the time
  from the first answer to the last (a result, or an error event), on the broker's append times.

    python -m bench.poison                         # the stage, 20,000 records
    KAFKA_BOOTSTRAP=127.0.0.1:9092 python -m bench.poison --worker --n 40000 --json poison.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Producer

from bench.designs import DesignProcess, command
from bench.measure import DesignFailed, Watermarks
from bench.run import _delete_topics
from bench.workload import fresh_settings, input_producer, requests_for
from pipeline.config import Settings
from pipeline.kafka.batching import Batch, InRecord
from pipeline.kafka.offsets import OffsetTracker
from pipeline.observability.metrics import Metrics
from pipeline.ops.collect import read_topic
from pipeline.serde import Codecs, EventCodec
from pipeline.stages.failures import FailureRouter
from pipeline.stages.input import InputStage

TARGET = 1 / 3
KINDS = ("garbage", "unknown fingerprint", "bad tensor", "tensor too large")


def records(codec: EventCodec, n: int, poison: bool, seed: int = 1) -> list[bytes]:
    """``n`` record values: tiny requests, every other one replaced by poison of the next kind when
    ``poison``."""
    clean = [codec.encode(r) for r in requests_for("tiny", n, seed)]
    if not poison:
        return clean
    rng = random.Random(seed)
    out = []
    for i, value in enumerate(clean):
        if i % 2 == 0:
            out.append(value)
            continue
        kind = KINDS[(i // 2) % len(KINDS)]
        request = requests_for("tiny", 1, seed + i)[0]
        if kind == "garbage":
            out.append(rng.randbytes(rng.randint(1, 120)))
        elif kind == "unknown fingerprint":
            out.append(b"\xc3\x01" + rng.randbytes(8) + value[10:])
        elif kind == "bad tensor":
            tensor = request["payload"]["tensors"][0]
            out.append(codec.encode({**request, "payload": {"tensors": [{**tensor, "shape": [9]}]}}))
        else:
            tensor = request["payload"]["tensors"][0]
            out.append(codec.encode({**request, "payload": {"tensors": [{**tensor, "shape": [65536, 65536, 1]}]}}))
    return out


@dataclass
class _Record:
    """A consumed record as the stage sees one (confluent-kafka's Message cannot be built by hand)."""

    value_: bytes
    offset_: int

    def topic(self) -> str:
        return "bench.input"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self.value_

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


def stage_rate(settings: Settings, values: Sequence[bytes], repeats: int = 3) -> float:
    """Records per second through ``InputStage.process``, the best of ``repeats`` passes."""
    codecs = Codecs.from_settings(settings)
    metrics = Metrics()
    router = FailureRouter(codecs.error, "bench.error", "bench.dead-letter", "bench.input", metrics)
    stage = InputStage(
        codecs.request, router, "bench.inference", "bench.priority", frozenset({"tiny"}), "tiny", metrics
    )
    size = settings.input_batch_size
    loop = asyncio.new_event_loop()
    best = 0.0
    try:
        for _ in range(repeats):
            batches = []
            for start in range(0, len(values), size):
                chunk: list[InRecord] = [_Record(v, start + i) for i, v in enumerate(values[start : start + size])]
                batches.append(
                    Batch(chunk, OffsetTracker().open({("bench.input", 0): (start, start + len(chunk) - 1)}))
                )
            started = time.perf_counter()
            for batch in batches:
                loop.run_until_complete(stage.process(batch))
            best = max(best, len(values) / (time.perf_counter() - started))
    finally:
        loop.close()
    return best


def worker_rate(bootstrap: str, n: int, poison: bool, log: Any) -> float:
    """Events/s of a real worker draining ``n`` pre-loaded records (half poison when ``poison``)."""
    settings = fresh_settings(bootstrap, "poison" if poison else "clean", "tiny", append_time=("output", "error"))
    try:
        codec = Codecs.from_settings(settings).request
        producer: Producer = input_producer(settings)
        for i, value in enumerate(records(codec, n, poison)):
            while True:
                try:
                    producer.produce(settings.topics.input, value=value, key=str(i).encode())
                    break
                except BufferError:
                    producer.poll(0.05)
        if producer.flush(60) != 0:
            raise DesignFailed("the backlog was not acknowledged")
        answers = (settings.topics.output, settings.topics.error)
        with DesignProcess(command("pipeline", settings, "tiny", settings.batch_size), settings) as proc:
            marks = [Watermarks(settings, topic) for topic in answers]
            deadline = time.monotonic() + max(180.0, n / 200)
            try:
                while (done := sum(m.total() for m in marks)) < n:
                    if not proc.alive():
                        raise DesignFailed(f"the worker exited after {done} of {n} answers:\n{proc.output()}")
                    if time.monotonic() > deadline:
                        raise DesignFailed(f"{done} of {n} answers in time:\n{proc.output()}")
                    time.sleep(0.2)
                counts = {m.topic: m.total() for m in marks}
            finally:
                for m in marks:
                    m.close()
        stamps = sorted(
            r.timestamp for topic in answers for r in read_topic(settings, topic, expected=counts[topic], timeout_s=120)
        )
        span = (stamps[-1] - stamps[0]) / 1000.0
        rate = (n - 1) / span if span > 0 else 0.0
        log(
            f"worker {'half poison' if poison else 'clean':11s} {rate:9,.0f} events/s ({n:,} in {span:.2f} s: "
            f"{counts[settings.topics.output]:,} results, {counts[settings.topics.error]:,} errors)"
        )
        return rate
    finally:
        _delete_topics(settings)


@dataclass
class Figures:
    n: int
    stage_clean: float
    stage_poison: float
    worker_clean: float | None = None
    worker_poison: float | None = None

    @property
    def stage_ratio(self) -> float:
        return self.stage_poison / self.stage_clean

    @property
    def worker_ratio(self) -> float | None:
        if self.worker_clean and self.worker_poison is not None:
            return self.worker_poison / self.worker_clean
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.poison", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="records per stream (default 20,000)")
    parser.add_argument("--worker", action="store_true", help="also drain both streams with a real worker")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"), help="the broker (--worker)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    settings = Settings()
    codec = Codecs.from_settings(settings).request
    clean, mixed = records(codec, args.n, False), records(codec, args.n, True)
    figures = Figures(args.n, stage_rate(settings, clean), stage_rate(settings, mixed))
    log(f"stage  clean       {figures.stage_clean:9,.0f} records/s")
    log(f"stage  half poison {figures.stage_poison:9,.0f} records/s  ({', '.join(KINDS)} in turn)")
    if args.worker:
        if not args.bootstrap:
            parser.error("--worker needs a broker: KAFKA_BOOTSTRAP or --bootstrap")
        try:
            figures.worker_clean = worker_rate(args.bootstrap, args.n, False, log)
            figures.worker_poison = worker_rate(args.bootstrap, args.n, True, log)
        except DesignFailed as exc:
            log(f"worker FAILED: {exc}")
            return 2
    met = [figures.stage_ratio >= TARGET]
    log(f"ratio  stage  {figures.stage_ratio:.2f} (target {TARGET:.2f})")
    if figures.worker_ratio is not None:
        met.append(figures.worker_ratio >= TARGET)
        log(f"ratio  worker {figures.worker_ratio:.2f} (target {TARGET:.2f})")
    if args.json:
        result = {**asdict(figures), "stage_ratio": figures.stage_ratio, "worker_ratio": figures.worker_ratio}
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
