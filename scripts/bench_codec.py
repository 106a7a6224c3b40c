"""Micro-benchmark of the event codec on one core: encode and decode events/s.

    .venv/bin/python scripts/bench_codec.py [--n 200000] [--repeat 5] [--framing single-object|confluent]

InferenceRequest with about 200 characters of text, InferenceResult with a 384-float embedding. Decoding of
requests is shown with and without the semantic validation that the processors run. Each figure is the best
of ``--repeat`` runs over one batch of ``--n`` distinct events (encode_many/decode_many). The process is
pinned to one CPU where the OS allows it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.serde import EventCodec, build_request, build_result

TEXT = (
    "Kafka carries the events and the worker embeds each sentence in a micro-batch; this request holds about "
    "two hundred characters of text, as a typical short document or a chat message would do."
)


def best_rate(fn: Callable[[], Any], n: int, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="events per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (the best is shown)")
    parser.add_argument("--framing", choices=["single-object", "confluent"], default="single-object")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    settings = Settings(
        framing=args.framing, schema_registry_url="mock://bench" if args.framing == "confluent" else None
    )
    request_codec = EventCodec.from_settings(settings, "request", validate=False)
    validating = EventCodec.from_settings(settings, "request", validate=True)
    result_codec = EventCodec.from_settings(settings, "result")
    assert 190 <= len(TEXT) <= 210, len(TEXT)

    rng = np.random.default_rng(0)
    requests = [
        build_request(model="minilm-l6", text=TEXT, source="bench", attributes={"run": "bench"}) for _ in range(args.n)
    ]
    vectors = rng.standard_normal((min(args.n, 1000), 384)).astype(np.float32)
    results = [
        build_result(
            request=requests[i],
            model_name="minilm-l6",
            model_version="1",
            provider="CPUExecutionProvider",
            embedding=vectors[i % len(vectors)],
            batch_size=32,
            worker_id="bench",
        )
        for i in range(args.n)
    ]
    request_bytes = request_codec.encode_many(requests)
    result_bytes = result_codec.encode_many(results)

    rows = [
        ("InferenceRequest encode", best_rate(lambda: request_codec.encode_many(requests), args.n, args.repeat)),
        ("InferenceRequest decode", best_rate(lambda: request_codec.decode_many(request_bytes), args.n, args.repeat)),
        (
            "InferenceRequest decode + validate",
            best_rate(lambda: validating.decode_many(request_bytes), args.n, args.repeat),
        ),
        ("InferenceResult encode", best_rate(lambda: result_codec.encode_many(results), args.n, args.repeat)),
        ("InferenceResult decode", best_rate(lambda: result_codec.decode_many(result_bytes), args.n, args.repeat)),
    ]
    print(
        f"codec benchmark: framing={args.framing}, {args.n} events x best of {args.repeat}, one core, "
        f"python {platform.python_version()}, request {len(request_bytes[0])} B, result {len(result_bytes[0])} B"
    )
    for name, rate in rows:
        print(f"{name:<36} {rate:>12,.0f} events/s  ({1e6 / rate:.2f} us/event)")


if __name__ == "__main__":
    main()
