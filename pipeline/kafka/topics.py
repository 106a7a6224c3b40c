"""The project's topic layout and its idempotent creation.

Each role's topic gets configs that suit it: the dead-letter topic keeps records long (operators redrive
from it days later), the rest use the broker's retention. ``min.insync.replicas`` follows the replication
factor so that acks=all means something on a real cluster and still works on a single local broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pipeline.config import Settings


@dataclass(frozen=True)
class TopicSpec:
    role: str
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    rf = settings.replication_factor
    common = {"min.insync.replicas": str(min(2, rf) if rf >= 3 else 1)}
    parts = settings.partitions
    t = settings.topics
    return [
        TopicSpec("input", t.input, parts, rf, dict(common)),
        TopicSpec("inference", t.inference, parts, rf, dict(common)),
        TopicSpec("inference_priority", t.inference_priority, parts, rf, dict(common)),
        TopicSpec("output", t.output, parts, rf, dict(common)),
        TopicSpec("error", t.error, parts, rf, dict(common)),
        TopicSpec(
            "dead_letter",
            t.dead_letter,
            parts,
            rf,
            {**common, "retention.ms": str(settings.dead_letter_retention_ms)},
        ),
        # Faust needs one topic subscription; nothing is written here yet.
        TopicSpec("control", t.control, 1, rf, dict(common)),
    ]


def create_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 15.0) -> dict[str, bool]:
    """Create what is missing; returns name -> True if created now, False if it already existed."""
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=s.config) for s in specs
    ]
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    result: dict[str, bool] = {}
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
            result[name] = True
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = False
            else:
                raise
    return result


_SHOWN_CONFIGS = ("retention.ms", "min.insync.replicas", "cleanup.policy")


def describe_topics(admin: AdminClient, names: list[str], timeout_s: float = 10.0) -> dict[str, TopicState]:
    """State of the named topics that exist (missing ones are left out)."""
    md = admin.list_topics(timeout=timeout_s)
    present = [n for n in names if n in md.topics and md.topics[n].error is None]
    configs: dict[str, dict[str, str]] = {n: {} for n in present}
    if present:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in present]
        for res, fut in admin.describe_configs(resources, request_timeout=timeout_s).items():
            entries = fut.result(timeout=timeout_s)
            configs[res.name] = {k: entries[k].value for k in _SHOWN_CONFIGS if k in entries}
    states: dict[str, TopicState] = {}
    for n in present:
        parts = md.topics[n].partitions
        replication = len(next(iter(parts.values())).replicas) if parts else 0
        states[n] = TopicState(n, len(parts), replication, configs[n])
    return states
