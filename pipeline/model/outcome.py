"""Per-event results of a model run: each event gets a Success or a Failure, never a batch-wide error.

A failure is the pipeline's one per-event failure value (:class:`~pipeline.serde.failure.Failure`, stage
``INFERENCE``; ``VALIDATE`` for a model the registry does not know); ``retryable`` says whether sending the
same event again may succeed (a transient device fault), as opposed to an input that fails every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipeline.serde.failure import Failure


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Which model answered and where it ran; copied into each result so that results are traceable."""

    name: str
    version: str
    provider: str


@dataclass(frozen=True, slots=True)
class Success:
    """A result: ``embedding`` for text-embedding models, ``outputs`` (named tensors) for tensor models.

    Arrays are float32 (or the model's output dtype) numpy arrays without a batch axis.
    ``truncated`` is true when the text was cut at the model's maximum sequence length.
    """

    model: ModelInfo
    embedding: np.ndarray | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    truncated: bool = False
    ok: Literal[True] = True


Outcome = Success | Failure
