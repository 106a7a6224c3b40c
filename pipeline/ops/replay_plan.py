"""Replay policy, free of I/O: the replay's identity, the range it copies and how that range is recorded
in the replay group's committed offsets, what a copied record looks like, and which records a
``--filter`` keeps.

Why the range lives in the commit metadata: a resumed replay must copy exactly the range the first run
planned, even when the source has grown since and ``--to`` was "the end" or a relative time. The plan is
committed (``send_offsets_to_transaction``) before the first record is copied and again with every
transaction, atomically with the records, so the group's offsets say both where to go on and where to stop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.ops.filters import RecordFilter, Resolver, parse_filters
from pipeline.ops.ranges import PartitionRange

HEADER_PREFIX = "__pipeline.replay."
H_ID = HEADER_PREFIX + "id"
H_TOPIC = HEADER_PREFIX + "topic"
H_PARTITION = HEADER_PREFIX + "partition"
H_OFFSET = HEADER_PREFIX + "offset"
METADATA_VERSION = 1

# --filter fields of a replayed record; anything else with a dot or a plain name is a path into the
# decoded event (model.name, priority, source, error_code, ...), and header.<name> a header.
REPLAY_FIELDS = ("key", "partition", "type", "model", "priority", "source", "event_id", "error_code", "tenant")
REPLAY_PREFIXES = ("header.", "model.", "payload.", "attributes.", "output.")

Headers = list[tuple[str, bytes]]


def replay_id_for(source: str, target: str, start: str | None, end: str | None, filters: Sequence[str]) -> str:
    """The same command line gives the same id, so re-running an interrupted replay resumes it."""
    text = json.dumps([source, target, start, end, sorted(filters)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# A replay's group and transactional id start with the pipeline's group, as every group and transactional
# id the project uses does: one prefixed ACL on that name lets the pipeline's user run them all.


def group_for(group: str, replay_id: str) -> str:
    return f"{group}.replay.{replay_id}"


def transactional_id_for(group: str, replay_id: str) -> str:
    """Stable per replay: a resumed run's ``init_transactions`` fences the killed one and aborts its open
    transaction, so nothing it wrote after its last commit is ever visible to read_committed readers."""
    return f"{group}.replay.{replay_id}"


@dataclass(frozen=True)
class ReplayPlan:
    replay_id: str
    source: str
    target: str
    ranges: tuple[PartitionRange, ...]

    @property
    def total(self) -> int:
        return sum(r.size for r in self.ranges)

    def metadata(self, r: PartitionRange) -> str:
        """What the replay group commits with partition ``r.partition``'s position."""
        return json.dumps(
            {"v": METADATA_VERSION, "id": self.replay_id, "start": r.start, "end": r.end}, separators=(",", ":")
        )


def range_from_metadata(replay_id: str, partition: int, metadata: str | None) -> PartitionRange | None:
    """The range a previous run recorded for ``partition``, or None if it recorded none (or for another
    replay: a group id collision must not steer this one)."""
    if not metadata:
        return None
    try:
        data = json.loads(metadata)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("v") != METADATA_VERSION or data.get("id") != replay_id:
        return None
    return PartitionRange(partition, int(data["start"]), int(data["end"]))


def remaining(planned: Sequence[PartitionRange], committed: dict[int, int]) -> list[PartitionRange]:
    """What is left after the committed positions: each range starts at its position, if further."""
    out = []
    for r in planned:
        start = max(r.start, committed.get(r.partition, r.start))
        out.append(PartitionRange(r.partition, min(start, r.end), r.end))
    return out


def replay_headers(
    headers: Sequence[tuple[str, bytes | None]], replay_id: str, topic: str, partition: int, offset: int
) -> Headers:
    """The record's headers, with the replay's own (a replay of a replay keeps only the latest
    provenance, so the headers do not grow with each copy)."""
    kept = [(k, v if v is not None else b"") for k, v in headers if not k.startswith(HEADER_PREFIX)]
    return [
        *kept,
        (H_ID, replay_id.encode()),
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
    ]


def keep_partitions(source_partitions: int, target_partitions: int) -> bool:
    """Keep each record's partition when the target has room for every source partition: per-key order
    and co-partitioning stay as they were. Otherwise the key decides, as for any producer."""
    return target_partitions >= source_partitions


def parse_replay_filters(texts: Sequence[str]) -> RecordFilter:
    return parse_filters(texts, REPLAY_FIELDS, REPLAY_PREFIXES)


def record_resolver(
    key: bytes | None,
    partition: int,
    headers: Sequence[tuple[str, bytes | None]],
    decode: Callable[[], tuple[str, dict[str, Any]] | None],
) -> Resolver:
    """Fields of one record for a filter; the value is decoded only when a filter asks for an event field,
    and at most once."""
    cache: list[tuple[str, dict[str, Any]] | None] = []

    def event() -> tuple[str, dict[str, Any]] | None:
        if not cache:
            cache.append(decode())
        return cache[0]

    def resolve(name: str) -> str | None:
        if name == "key":
            return None if key is None else key.decode("utf-8", "replace")
        if name == "partition":
            return str(partition)
        if name.startswith("header."):
            wanted = name[len("header.") :]
            for k, v in headers:
                if k == wanted and v is not None:
                    return v.decode("utf-8", "replace")
            return None
        found = event()
        if found is None:
            return None
        kind, datum = found
        if name == "type":
            return kind
        if name == "model" and isinstance(datum.get("model"), dict):
            name = "model.name"
        value: Any = datum
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return None if value is None or isinstance(value, dict | list | bytes) else str(value)

    return resolve
