"""The priority lane: while a worker's lane reader has records to answer, its bulk reader holds the bulk.

The lane is a reader of its own, in a consumer group of its own (``{group}.inference.priority``): a group
balances the partitions of each topic it reads only by their total count, so one group for the bulk topic
and the lane could leave a worker all the lane's (mostly idle) partitions and none of the bulk's. One
topic per group gives each worker its share of both.

The lane's records go first in two ways. Its batches have an agent of their own, so a lane batch waits
behind at most the one bulk batch the model is running, never behind a queue of them. And while the lane
is behind (its reader's last batch closed full: more records were waiting than one batch takes), the bulk's
reader holds its partitions (pauses them and drops the records already fetched for them, which are fetched
again on resume), so the whole worker works off the lane's backlog first. A lane that keeps up (its
batches close on their deadline) never holds the bulk: a steady trickle of priority events must not starve
it. Order within a partition never changes, and a lane without partitions in this worker is never behind.
"""

from __future__ import annotations


class LaneSignal:
    """Written by the lane's reader thread, read by the bulk's: a plain attribute, no lock needed."""

    def __init__(self) -> None:
        self._busy = False
        self.pauses = 0  # how many times the lane made the bulk wait

    def report(self, busy: bool) -> None:
        if busy and not self._busy:
            self.pauses += 1
        self._busy = busy

    def busy(self) -> bool:
        return self._busy
