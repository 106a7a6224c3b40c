"""The floor: the CPU one event costs the pipeline's job alone, in one process, with no Kafka.

Per event, what the two roles must do whatever moves the records (the work at each of the four client
calls: consume, forward, consume, produce): decode the request and validate it (the input role), encode
the forward, decode it again without validating (the inference role, as the worker does), run the model
in batches of the pipeline's size, write the result as the inference role writes it. With the pipeline's own codec,
validation, model runner and result builder, so that the pipeline / floor ratio measures what the rest
costs: the clients, the hand-offs, the batching, the commits. CPU is the process's (all its threads: ONNX
Runtime's too), over repeated passes through the backlog's requests after a warm-up pass;
``scripts/bench`` runs it in a process of its own, right before the pipeline, and prints it beside the
pipeline's CPU per event.

    python -m bench.floor --model tiny --events 20000 --batch 32    one JSON line on stdout
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.job import result_values
from bench.workload import requests_for
from pipeline.config import Settings
from pipeline.model.outcome import Success
from pipeline.model.service import ModelService
from pipeline.serde import Codecs, EventCodec


def job_pass(codecs: Codecs, again: EventCodec, models: ModelService, values: list[bytes], batch: int) -> int:
    """The job on every value once, in model batches of ``batch``; returns how many results it encoded.
    ``again`` is the inference role's request codec (no validation: the input role validated)."""
    done = 0
    for i in range(0, len(values), batch):
        forwarded = [codecs.request.encode(codecs.request.decode(v)) for v in values[i : i + batch]]
        requests = [again.decode(v) for v in forwarded]
        started = time.time()
        outcomes = models.run_batch([((r.get("model") or {}).get("name"), r["payload"]) for r in requests])
        inference_ms = (time.time() - started) * 1000.0
        for outcome in outcomes:
            if not isinstance(outcome, Success):
                raise RuntimeError(f"the floor's input failed: {outcome}")
        answered = list(zip(requests, outcomes, strict=True))
        done += len(result_values(codecs.result, answered, inference_ms, len(requests), "floor"))
    return done


def measure(model: str, events: int, batch: int, min_seconds: float = 1.0) -> dict[str, Any]:
    """CPU µs per event and events/s of the job alone, over passes through ``events`` requests."""
    settings = Settings(model=model, batch_size=batch)
    codecs = Codecs.from_settings(settings)
    again = EventCodec.from_settings(settings, "request", validate=False)
    models = ModelService.from_settings(settings)
    try:
        values = [codecs.request.encode(r) for r in requests_for(model, events, seed=1)]
        job_pass(codecs, again, models, values[: batch * 4], batch)  # warm-up
        done, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
        while True:
            done += job_pass(codecs, again, models, values, batch)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            if wall >= min_seconds:
                return {"model": model, "events": done, "batch_size": batch, "cpu_s": cpu,
                        "cpu_us_per_event": 1e6 * cpu / done, "events_per_s": done / wall}  # fmt: skip
    finally:
        models.close()


def floor(model: str, events: int, batch: int, seconds: float = 2.0) -> dict[str, Any]:
    """:func:`measure` in a process of its own (no thread of the bench's in its CPU), for at least
    ``seconds``."""
    args = ["--model", model, "--events", str(events), "--batch", str(batch), "--seconds", str(seconds)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.floor", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the floor failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=Settings().batch_size)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.events, args.batch, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
