"""The latency reader: a process of its own that stamps every output record with its receive time.

A process, not a thread: the generator and the design under test must not delay the stamp by holding
its GIL. It takes the partitions by assignment at the offsets it is given (no group join to wait for),
and this module imports only confluent-kafka so that it starts fast under ``spawn``.
"""

from __future__ import annotations

import time
from multiprocessing.synchronize import Event
from typing import Any

from confluent_kafka import Consumer, TopicPartition

Arrival = tuple[bytes | None, float]  # key, receive time (wall clock, seconds)


def read_arrivals(bootstrap: str, topic: str, offsets: dict[int, int], out: Any, stop: Event) -> None:
    """Put ``"ready"`` once assigned and polled, then lists of arrivals until ``stop`` is set."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-latency-reader-{topic}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
        consumer.consume(1, timeout=0.5)  # connections and fetch sessions are up before "ready"
        out.put("ready")
        while not stop.is_set():
            # poll() returns as soon as one record is there; consume() would wait for its whole count or
            # its timeout, and stamp early records late. What is already queued is taken without waiting.
            first = consumer.poll(0.01)
            if first is None:
                continue
            now = time.time()
            batch = [first, *consumer.consume(1000, timeout=0)]
            out.put([(m.key(), now) for m in batch if m.error() is None])
    finally:
        consumer.close()
