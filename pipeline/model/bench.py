"""`pipeline model bench`: the model's own events/s per batch size, the ceiling the pipeline is held to.

It runs the runner's full per-event path (validation, tokenisation with the runner's settings, bucketing,
ONNX Runtime, per-event outcomes), the same work the inference agent asks of it, minus Kafka.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline.model.inputs import ModelInput
from pipeline.model.outcome import Failure
from pipeline.model.runner import ModelRunner
from pipeline.model.texts import mixed_texts


@dataclass(frozen=True, slots=True)
class BenchRow:
    batch: int
    events: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def ms_per_batch(self) -> float:
        return 1000.0 * self.seconds * self.batch / self.events if self.events else 0.0


def bench_inputs(runner: ModelRunner, n: int = 512) -> list[ModelInput]:
    """A fixed, deterministic input set: mixed-length texts, or seeded random tensors of the right shape."""
    if runner.spec.task == "text-embedding":
        return [ModelInput(text=t) for t in mixed_texts(n)]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        tensors = {}
        for req, graph in runner.spec.inputs.items():
            _, shape = runner.inputs[graph]
            dims = [d if isinstance(d, int) else 1 for d in shape[1:]]
            tensors[req] = rng.standard_normal(dims).astype(np.float32)
        out.append(ModelInput(tensors=tensors))
    return out


def bench(runner: ModelRunner, batches: list[int], *, min_seconds: float = 2.0, n_inputs: int = 512) -> list[BenchRow]:
    """Events/s per batch size: consecutive batches over the fixed inputs, ``min_seconds`` at least."""
    inputs = bench_inputs(runner, n_inputs)
    rows = []
    for size in batches:
        runner.run_batch(inputs[:size])  # this batch shape's own warm-up
        events, start, i = 0, time.perf_counter(), 0
        while True:
            chunk = [inputs[(i + k) % len(inputs)] for k in range(size)]
            i += size
            failed = [o for o in runner.run_batch(chunk) if isinstance(o, Failure)]
            if failed:
                raise RuntimeError(f"bench input failed: {failed[0].message}")
            events += size
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds and events >= len(inputs):  # every size sees every input
                break
        rows.append(BenchRow(size, events, elapsed))
    return rows
