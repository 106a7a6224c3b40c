"""Events/s and end-to-end latency of the whole pipeline (a real worker process) for one or more models.

Throughput: N requests pre-loaded on the input topic, then the worker starts; events/s from the first to
the last result arriving on the output topic. Latency: a fresh set of topics, the worker running, N
requests offered at a fixed rate (a fraction of the measured throughput) with ``created_at`` set at send
time; latency is the reader's receive time minus ``created_at``.

    .venv/bin/python scripts/pipeline_figures.py --events 10000 --models tiny,minilm-l6 --batch-size 32

Uses ``KAFKA_BOOTSTRAP`` when set, else starts the local broker in a state folder of its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402

from pipeline.config import Settings, Topics  # noqa: E402
from pipeline.kafka.clients import producer_config  # noqa: E402
from pipeline.ops.collect import read_topic  # noqa: E402
from pipeline.ops.generate import text_requests, tiny_requests  # noqa: E402
from pipeline.serde import Codecs, now_millis  # noqa: E402
from tests.harness import WorkerProcess, create_pipeline_topics, produce_requests  # noqa: E402


def fresh_settings(bootstrap: str, partitions: int) -> Settings:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(**{role: f"figures.{tag}.{name}" for role, name in Topics().all().items()})
    settings = Settings(bootstrap_servers=bootstrap, topics=topics, group=f"figures-{tag}", partitions=partitions)
    create_pipeline_topics(settings)
    return settings


def requests_for(model: str, n: int, seed: int) -> list[dict[str, Any]]:
    return list(tiny_requests(n, seed=seed)) if model == "tiny" else list(text_requests(n, model=model, seed=seed))


def throughput(bootstrap: str, model: str, n: int, batch: int, partitions: int) -> float:
    settings = fresh_settings(bootstrap, partitions)
    produce_requests(settings, requests_for(model, n, seed=1))
    with WorkerProcess(settings, "--model", model, "--batch-size", str(batch)):
        out = read_topic(settings, settings.topics.output, expected=n, timeout_s=1800)
    times = sorted(r.received_at for r in out)
    return (len(times) - 1) / (times[-1] - times[0])


def latency(bootstrap: str, model: str, n: int, batch: int, partitions: int, rate: float) -> dict[str, float]:
    settings = fresh_settings(bootstrap, partitions)
    codec = Codecs.from_settings(settings).request
    requests = requests_for(model, n, seed=2)
    warmup = requests_for(model, 200, seed=3)
    with WorkerProcess(settings, "--model", model, "--batch-size", str(batch)) as worker:
        worker.wait_assigned()
        # The reader is a process of its own: in this one it would share the GIL with the generator, and
        # its receive times would include that wait.
        ctx = multiprocessing.get_context("spawn")
        received: Queue[list[tuple[str, float]]] = ctx.Queue()
        producer = Producer(producer_config(settings, **{"linger.ms": 1}))
        # Warm-up: every client's first write to a topic waits for metadata (about 0.5 s here); that is
        # start-up cost, not the latency of a running pipeline, so it is paid before measuring.
        for request in warmup:
            producer.produce(settings.topics.input, value=codec.encode(request), key=request["event_id"].encode())
        producer.flush(30)
        read_topic(settings, settings.topics.output, expected=len(warmup), timeout_s=600)
        reader = ctx.Process(target=_read_results, args=(settings, n, len(warmup), received))
        reader.start()
        time.sleep(2.0)  # the reader is assigned its partitions before the first request is sent
        started = time.perf_counter()
        for i, request in enumerate(requests):
            due = started + i / rate
            while (wait := due - time.perf_counter()) > 0:
                time.sleep(min(wait, 0.01))
            request["created_at"] = now_millis()
            producer.produce(settings.topics.input, value=codec.encode(request), key=request["event_id"].encode())
            producer.poll(0)
        producer.flush(30)
        arrivals = received.get(timeout=1800)
        reader.join(timeout=30)
    created = {req["event_id"]: req["created_at"] for req in requests}
    lat = np.array([at * 1000 - created[event_id] for event_id, at in arrivals if event_id in created])
    return {
        "offered_per_s": rate,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def _read_results(settings: Settings, n: int, skip: int, out: Queue[list[tuple[str, float]]]) -> None:
    codec = Codecs.from_settings(settings).result
    records = read_topic(settings, settings.topics.output, expected=n + skip, timeout_s=1800)
    out.put([(codec.decode(r.value)["event_id"], r.received_at) for r in records])


def broker() -> tuple[str, dict[str, str] | None]:
    given = os.environ.get("KAFKA_BOOTSTRAP")
    if given:
        return given, None
    env = {**os.environ, "KAFKA_LOCAL_STATE": str(ROOT / "infra" / "kafka" / ".local" / "figures-state")}
    started = subprocess.run(
        [str(ROOT / "infra" / "kafka" / "kafka-local"), "start"], env=env, capture_output=True, text=True, check=True
    )
    return started.stdout.strip().splitlines()[-1], env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--models", default="tiny,minilm-l6")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate-fraction", type=float, default=0.5, help="offered rate / measured events/s")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bootstrap, env = broker()
    figures: dict[str, Any] = {}
    try:
        for model in args.models.split(","):
            eps = throughput(bootstrap, model, args.events, args.batch_size, args.partitions)
            lat = latency(bootstrap, model, args.events, args.batch_size, args.partitions, eps * args.rate_fraction)
            figures[model] = {"events": args.events, "batch_size": args.batch_size, "events_per_s": eps, **lat}
            print(
                f"{model:10s} batch {args.batch_size:4d}: {eps:9.0f} events/s (backlog of {args.events}); "
                f"at {lat['offered_per_s']:.0f}/s offered: p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms, "
                f"p99 {lat['p99_ms']:.0f} ms",
                flush=True,
            )
    finally:
        if env is not None:
            subprocess.run([str(ROOT / "infra" / "kafka" / "kafka-local"), "stop"], env=env, capture_output=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
