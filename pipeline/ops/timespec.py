"""Parsing of the operator's positions: times (ISO-8601 or relative) and explicit partition offsets.

Pure functions, apart from I/O, so that every command (tail, replay, offsets reset) reads positions the
same way and a typo fails before anything touches the broker.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.ops.errors import CommandError

_RELATIVE = re.compile(r"^-(\d+)\s*(s|m|h|d|w)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_OFFSETS = re.compile(r"^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$")


class SpecError(CommandError, ValueError):
    """A position or time the operator wrote that cannot be read; the message is one line for a person."""


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds of ``text``: ISO-8601 (naive means UTC, so a run does not depend on the host's
    zone), ``now``, or relative to now (``-15m``, ``-2h``, ``-30s``, ``-1d``, ``-1w``)."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    value = text.strip()
    if value.lower() == "now":
        return now
    rel = _RELATIVE.match(value)
    if rel:
        return now - int(rel.group(1)) * _UNIT_MS[rel.group(2)]
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise SpecError(
            f"cannot read time {text!r}: use ISO-8601 (2024-05-01T12:00:00Z) or relative (-15m, -2h, -1d)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def parse_offsets(text: str) -> dict[int, int]:
    """``0:100,1:250`` -> {0: 100, 1: 250}; a partition named twice is a mistake, not a merge."""
    if not _OFFSETS.match(text):
        raise SpecError(f"cannot read offsets {text!r}: use PARTITION:OFFSET pairs, e.g. 0:100,1:250")
    out: dict[int, int] = {}
    for pair in text.split(","):
        p, o = (int(x) for x in pair.split(":"))
        if p in out:
            raise SpecError(f"partition {p} is named twice in {text!r}")
        out[p] = o
    return out


@dataclass(frozen=True)
class Position:
    """Where a range starts or ends: a time (resolved per partition by the broker) or explicit offsets."""

    time_ms: int | None = None
    offsets: dict[int, int] | None = None


def parse_position(text: str, now_ms: int | None = None) -> Position:
    """OFFSETS when it looks like ``P:O[,P:O]``, else a time."""
    if _OFFSETS.match(text):
        return Position(offsets=parse_offsets(text))
    return Position(time_ms=parse_time(text, now_ms))
