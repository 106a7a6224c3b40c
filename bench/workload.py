"""The data every design sees: fresh topics per run and the same deterministic requests.

The output topic stamps records with the broker's append time (``LogAppendTime``): throughput is then
measured from the broker's own clock, from the first output to the last, the same way for every design
and whatever timestamp a design sets (Quix forwards the input's, the pipeline sets its produce time).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
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


def preload(settings: Settings, model: str, n: int, seed: int = 1) -> None:
    """The backlog a throughput run drains, keyed by ``event_id``, acknowledged before the design starts."""
    codec = Codecs.from_settings(settings).request
    producer = input_producer(settings)
    for i, request in enumerate(requests_for(model, n, seed)):
        while True:
            try:
                producer.produce(settings.topics.input, value=codec.encode(request), key=request["event_id"].encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("the backlog was not acknowledged")
