"""Retry policy for transient failures: exponential backoff with jitter, then give up.

Kept apart from the I/O that uses it, so the numbers can be tested and changed on their own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0
    jitter: float = 0.2

    def should_retry(self, attempts: int) -> bool:
        """``attempts`` made so far (>= 1)."""
        return attempts < self.max_attempts

    def delay_s(self, attempts: int, rng: random.Random | None = None) -> float:
        """Pause before attempt number ``attempts + 1``."""
        delay = min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempts - 1)))
        spread = delay * self.jitter
        return max(0.0, delay + (rng or random).uniform(-spread, spread))
