"""The data every design sees: fresh topics per run and the same deterministic requests.

The output topic stamps records with the broker's append time (``LogAppendTime``): throughput is then
measured from the broker's own clock, from the first output to the last, the same way for every design
and whatever timestamp a design sets (Quix forwards the input's, the pipeline sets its produce time).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from pipeline.config import Settings, Topics
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.clients import producer_config
from pipeline.kafka.topics import create_topics, topic_specs
from pipeline.ops.generate import text_requests, tiny_requests
from pipeline.serde import Codecs

PARTITIONS = 4


def fresh_settings(
    bootstrap: str, design: str, model: str, partitions: int = PARTITIONS, append_time: tuple[str, ...] = ("output",)
) -> Settings:
    """Topics and group names of their own for one design and model, created now; the topics of the
    ``append_time`` roles stamp their records with the broker's append time."""
    tag = f"{design}.{model}.{uuid.uuid4().hex[:6]}"
    topics = Topics(**{role: f"bench.{tag}.{name}" for role, name in Topics().all().items()})
    settings = Settings(bootstrap_servers=bootstrap, topics=topics, group=f"bench.{tag}", partitions=partitions)
    specs = [
        dataclasses.replace(s, config={**s.config, "message.timestamp.type": "LogAppendTime"})
        if s.role in append_time
        else s
        for s in topic_specs(settings)
    ]
    admin = connect_admin(settings)
    create_topics(admin, specs)
    _wait_for_leaders(admin, [s.name for s in specs])
    return settings


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """A topic answers produce and offset requests only once each partition has a leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        if all(
            name in topics and topics[name].partitions and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no leaders for the bench topics after {timeout_s:.0f} s")


def requests_for(model: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` requests for ``model``: seeded tensors for tiny, the mixed texts (`pipeline model bench`'s)
    for a text model."""
    if model == "tiny":
        return list(tiny_requests(n, seed=seed))
    return list(text_requests(n, model=model, seed=seed))


# Uncompressed input for every design: Faust's aiokafka has no lz4 codec here (the project's producers
# compress with lz4), and the same bytes on the wire for everyone keeps the comparison fair.
INPUT_PRODUCER = {"compression.type": "none", "linger.ms": 1}


def input_producer(settings: Settings) -> Producer:
    """acks=all and idempotent like every project producer, uncompressed (see ``INPUT_PRODUCER``)."""
    return Producer(producer_config(settings, **INPUT_PRODUCER))


def backlog(settings: Settings, model: str, n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """The backlog's records (key, value), encoded ahead so that releasing them costs only the produce."""
    codec = Codecs.from_settings(settings).request
    return [(r["event_id"].encode(), codec.encode(r)) for r in requests_for(model, n, seed)]


def release(settings: Settings, records: list[tuple[bytes, bytes]], before_visible: Callable[[], None]) -> None:
    """Write ``records`` to the input topic in one transaction, calling ``before_visible`` just before the
    first is produced. A design reading committed records (librdkafka's default: the pipeline, Quix, the
    raw designs) sees none of them until the commit and then the whole backlog at once, as if it had been
    there when it started; one reading uncommitted records (Faust's aiokafka) sees them as they are
    appended, far faster than it drains them."""
    producer = Producer(
        producer_config(settings, **INPUT_PRODUCER, **{"transactional.id": f"{settings.group}.backlog"})
    )
    producer.init_transactions(30)
    before_visible()
    producer.begin_transaction()
    for key, value in records:
        while True:
            try:
                producer.produce(settings.topics.input, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
    producer.commit_transaction(60)
