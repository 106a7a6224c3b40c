"""What the unit tests of holds hand them as records: the three fields holds read."""

from __future__ import annotations


class Record:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._tp, self._offset = (topic, partition), offset

    def topic(self) -> str:
        return self._tp[0]

    def partition(self) -> int:
        return self._tp[1]

    def offset(self) -> int:
        return self._offset
