"""``pipeline tail``: read a topic from a start position to the end offsets seen at the start (or on and
on with ``follow``) and turn each record into one JSON-able row.

The record type is found by the codecs themselves (the writer schema's fingerprint or registry id says
which chain wrote it), so one tail reads any of our topics. A dead letter (``__pipeline.errors.*``
headers) shows its context and its raw payload in base64; a record nothing can read is shown as
``undecodable`` with the reason and never stops the tool.

"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from pipeline.config import Settings
from pipeline.ops.errors import CommandError
from pipeline.ops.ranges import offsets_for_time, plan_range, probe_consumer, read_range, require_topic, watermarks
from pipeline.serde import Codecs, EventError, RegistryUnavailable
from pipeline.serde.deadletter import PREFIX


def jsonable(obj: Any) -> Any:
    """Avro datums -> JSON values: bytes (tensor data, raw payloads) as base64 text."""
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode()
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def decode_any(codecs: Codecs, value: bytes | None) -> tuple[str, dict[str, Any]] | str:
    """``(record type, datum)``, or the reason nothing could read it (the first codec's complaint:
    the three are usually the same framing problem)."""
    reasons = []
    for name, codec in (("request", codecs.request), ("result", codecs.result), ("error", codecs.error)):
        try:
            return name, codec.decode(value)
        except (EventError, RegistryUnavailable) as exc:
            reasons.append(str(exc))
        except Exception as exc:  # whatever a hostile payload makes a codec raise, tail goes on
            reasons.append(f"{type(exc).__name__}: {exc}")
    return reasons[0]


def render(msg: Message, codecs: Codecs) -> dict[str, Any]:
    """One record as a row: position, key, headers, and one of request/result/error, dead_letter (with
    ``value_b64``) or undecodable (with ``error`` and ``value_b64``)."""
    headers: Sequence[tuple[str, bytes | None]] = msg.headers() or []
    key = msg.key()
    row: dict[str, Any] = {
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": msg.timestamp()[1],
        "key": _text(key),
    }
    context = {k[len(PREFIX) :]: _text(v) for k, v in headers if k.startswith(PREFIX)}
    row["headers"] = {k: _text(v) for k, v in headers if not k.startswith(PREFIX)}
    value = msg.value()
    if context:
        row["dead_letter"] = context
        row["value_b64"] = _b64(value)
        return row
    decoded = decode_any(codecs, value)
    if isinstance(decoded, str):
        row["undecodable"] = True
        row["error"] = decoded
        row["value_b64"] = _b64(value)
    else:
        row[decoded[0]] = jsonable(decoded[1])
    return row


def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    from_time_ms: int | None = None,
    follow: bool = False,
    partition: int | None = None,
    max_records: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of ``topic``: from the beginning, a time, or (neither) the beginning when reading once and the
    end when following (like ``tail -f``: only what arrives from now on)."""
    partitions = require_topic(settings, topic)
    if partition is not None:
        if partition not in partitions:
            raise CommandError(f"topic {topic!r} has no partition {partition} (it has {len(partitions)})")
        partitions = [partition]
    codecs = Codecs.from_settings(settings, validate=False)
    consumer = probe_consumer(settings, **{"enable.partition.eof": True})
    try:
        marks = watermarks(consumer, topic, partitions)
        if from_time_ms is not None:
            found = offsets_for_time(consumer, topic, partitions, from_time_ms)
            starts = {p: marks[p][1] if found[p] < 0 else found[p] for p in partitions}
        elif from_beginning or not follow:
            starts = {p: low for p, (low, _) in marks.items()}
        else:
            starts = {p: high for p, (_, high) in marks.items()}
        if follow:
            messages = _follow(consumer, topic, starts)
        else:
            messages = read_range(consumer, topic, plan_range(starts, {}, marks))
        for n, msg in enumerate(messages, start=1):
            yield render(msg, codecs)
            if max_records is not None and n >= max_records:
                return
    finally:
        consumer.close()


def _follow(consumer: Consumer, topic: str, starts: dict[int, int]) -> Iterator[Message]:
    consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
    while True:
        for msg in consumer.consume(500, timeout=0.5):
            err = msg.error()
            if err is None:
                yield msg
            elif err.code() != KafkaError._PARTITION_EOF:
                raise CommandError(f"reading {topic}[{msg.partition()}]: {err.str()}")
        time.sleep(0)
