"""`produce`: JSON lines -> validated, encoded InferenceRequests on a topic.

The line format is :mod:`pipeline.ops.jsonlines` (policy); this module encodes, validates, paces and
sends, counting what the broker acknowledged rather than what was handed to the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Message, Producer

from pipeline.config import Settings
from pipeline.kafka.clients import producer_config
from pipeline.ops.jsonlines import LineError, ParsedLine, parse_line
from pipeline.serde import EventCodec, EventError, now_millis


def encode_line(codec: EventCodec, text: str, now_ms: int | None = None) -> tuple[ParsedLine, bytes]:
    """Parse and encode one line, then decode it once: the decode runs the request validator, so a
    record the worker would reject is caught here, with its line number, instead of becoming a dead
    letter."""
    parsed = parse_line(text, now_ms if now_ms is not None else now_millis())
    try:
        value = codec.encode(parsed.datum)
        codec.decode(value)
    except EventError as exc:
        raise LineError(str(exc)) from None
    return parsed, value


@dataclass
class ProduceReport:
    sent: int = 0
    failed: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


def produce_lines(
    settings: Settings,
    topic: str,
    codec: EventCodec,
    lines: Iterable[str],
    *,
    rate: float | None = None,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ProduceReport:
    """Send every valid line; invalid ones are reported with their line number and, unless ``strict``,
    skipped. ``rate`` caps records per second (paced, not bursted)."""
    report = ProduceReport()
    producer = Producer(producer_config(settings))
    started = time.monotonic()
    queued = 0

    def on_delivery(err: Any, _msg: Message) -> None:
        if err is None:
            report.sent += 1
        else:
            report.failed += 1

    try:
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                parsed, value = encode_line(codec, raw)
            except LineError as exc:
                report.invalid.append((lineno, str(exc)))
                if strict:
                    break
                continue
            if rate:
                wait = started + queued / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            while True:
                try:
                    producer.produce(
                        topic, value=value, key=parsed.key, headers=parsed.headers or None, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
                except KafkaException:
                    report.failed += 1
                    break
            queued += 1
            producer.poll(0)
            if progress is not None:
                progress(1)
    finally:
        left = producer.flush(30)
        report.failed += left
    return report
