"""What a stage will write: one record for one topic, made from one consumed record.

Stages return these instead of writing, so that a batch's outputs are written by one emitter
(:meth:`~pipeline.kafka.writer.OutputWriter.emit`) under the batch's ticket, and a stage can be tested by
feeding it records and reading the records that come out.
"""

from __future__ import annotations

from typing import NamedTuple

from pipeline.kafka.batching import InRecord

Headers = list[tuple[str, bytes]]


class OutRecord(NamedTuple):
    """``source`` is the consumed record this one answers: when the broker refuses this record for good
    (too large, invalid), the writer turns ``source`` into its own error event and dead letter instead.

    A value nothing changes once made, built once per event in each role: a named tuple, which is made
    without the frozen dataclass's ``object.__setattr__`` per field."""

    topic: str
    value: bytes | None
    key: bytes | None
    headers: Headers | None = None
    timestamp: int | None = None
    source: InRecord | None = None
