"""The model's ceiling: ONNX Runtime through the pipeline's own model runner, no Kafka.

The same requests as the throughput backlog (same seed, so the same texts in the same order), the same
runner (validation, tokenizer settings, bucketing), the pipeline's batch size and intra-op threads: the
most the inference agent could ever do on this machine (a ceiling runs the same texts with the same
tokenizer settings and batch size as the pipeline, or the ratio would measure something else).
"""

from __future__ import annotations

import time

from bench.workload import requests_for
from pipeline.config import Settings
from pipeline.model.outcome import Failure
from pipeline.model.service import ModelService


def model_ceiling(model: str, n: int, batch: int, min_seconds: float = 1.0) -> float:
    """Events/s over consecutive batches of ``batch`` through the first ``n`` backlog requests, repeated
    until ``min_seconds`` have passed."""
    service = ModelService.from_settings(Settings(model=model, batch_size=batch))
    try:
        payloads = [((r.get("model") or {}).get("name"), r["payload"]) for r in requests_for(model, n, seed=1)]
        service.run_batch(payloads[:batch])  # this shape's warm-up
        events, started = 0, time.perf_counter()
        while True:
            for i in range(0, n, batch):
                outcomes = service.run_batch(payloads[i : i + batch])
                failed = [o for o in outcomes if isinstance(o, Failure)]
                if failed:
                    raise RuntimeError(f"ceiling input failed: {failed[0].message}")
                events += len(outcomes)
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                return events / elapsed
    finally:
        service.close()
