"""Deterministic request generation for tests, benchmarks and demos.

Text requests reuse the model package's mixed texts (the same ones `pipeline model bench` measures), so a
pipeline figure and its model ceiling see the same token lengths.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np

from pipeline.model.texts import mixed_texts
from pipeline.serde import Priority, build_request


def tiny_requests(n: int, seed: int = 0, priority: Priority | str = Priority.NORMAL) -> Iterator[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield build_request(model="tiny", tensors={"x": rng.standard_normal(8).astype(np.float32)}, priority=priority)


def text_requests(n: int, model: str = "minilm-l6", seed: int = 0) -> Iterator[dict[str, Any]]:
    texts = mixed_texts(max(n, 1))
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    for i in range(n):
        yield build_request(model=model, text=texts[order[i % len(order)]])
