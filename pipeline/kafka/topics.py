"""The project's topic layout and its idempotent creation.

Each role's topic gets configs that suit it: the dead-letter topic keeps records long (operators redrive
from it days later), the rest use the broker's retention.

Replication follows the cluster unless ``replication_factor`` is set: min(3, brokers), the brokers being
those the admin client's cluster metadata lists when the topics are created (live ones: a broker that is
down then is not counted). So the same ``pipeline topics create`` gives one local broker topics it can host
and a cluster topics that outlive a broker. ``min.insync.replicas`` is 2 from replication 3 on: an acks=all
write is then on two brokers before it counts, and writes go on while one broker is away. Below 3 it is 1,
since 2 of 2 replicas would stop every write whenever either broker is down.

The dead-letter topic must take any record the input topic took, plus the ``__pipeline.errors.*`` context
headers the worker adds (``pipeline/serde/deadletter.py``; its free-text values are capped, so they stay
far below 64 KiB). So its ``max.message.bytes`` is the input topic's limit, the larger of the broker's
``message.max.bytes`` (1048588 unless the broker is configured otherwise) and the pipeline's own
``max_message_bytes``, plus :data:`DEAD_LETTER_HEADER_BYTES`. The broker's limit is read from one broker's
config at creation; a client that may not describe broker configs assumes Kafka's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pipeline.config import Settings

BROKER_MESSAGE_MAX_BYTES = 1_048_588
"""Kafka's default ``message.max.bytes``: the largest record batch a topic without its own limit takes."""
DEAD_LETTER_HEADER_BYTES = 65_536
"""Room on the dead-letter topic for the context headers on top of the largest input record."""
MAX_AUTO_REPLICATION = 3


@dataclass(frozen=True)
class Cluster:
    """What topic creation needs to know about the cluster."""

    brokers: int
    message_max_bytes: int = BROKER_MESSAGE_MAX_BYTES


def replication_for(brokers: int, configured: int | None = None) -> int:
    """The replication factor: the configured one, else min(3, brokers)."""
    if configured is not None:
        return configured
    return max(1, min(MAX_AUTO_REPLICATION, brokers))


def min_insync_for(replication: int) -> int:
    """2 from replication 3 on (one broker may fail without losing an acknowledged write), else 1."""
    return 2 if replication >= 3 else 1


def dead_letter_max_message_bytes(record_bytes: int, broker_limit: int = BROKER_MESSAGE_MAX_BYTES) -> int:
    """The dead-letter topic's ``max.message.bytes``: the largest record the input topic can hold (the
    broker's limit, or the pipeline's ``max_message_bytes`` if that is larger) plus the context headers."""
    return max(record_bytes, broker_limit) + DEAD_LETTER_HEADER_BYTES


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create. ``replication`` None follows the cluster (:func:`replication_for`), and
    ``min.insync.replicas`` follows the replication unless ``config`` sets it. ``wraps_records_of``, set
    on the dead-letter topic, is the pipeline's record limit: the topic's ``max.message.bytes`` then comes
    from :func:`dead_letter_max_message_bytes` with the broker's limit."""

    role: str
    name: str
    partitions: int
    replication: int | None = None
    config: dict[str, str] = field(default_factory=dict)
    wraps_records_of: int | None = None

    def resolved(self, cluster: Cluster) -> TopicSpec:
        """This spec with the cluster's values filled in: what is actually created."""
        replication = replication_for(cluster.brokers, self.replication)
        config = {"min.insync.replicas": str(min_insync_for(replication)), **self.config}
        if self.wraps_records_of is not None:
            config["max.message.bytes"] = str(
                dead_letter_max_message_bytes(self.wraps_records_of, cluster.message_max_bytes)
            )
        return replace(self, replication=replication, config=config)


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The pipeline's topics; :func:`create_topics` resolves what depends on the cluster."""
    rf = settings.replication_factor
    parts = settings.partitions
    t = settings.topics
    return [
        TopicSpec("input", t.input, parts, rf),
        TopicSpec("inference", t.inference, parts, rf),
        TopicSpec("inference_priority", t.inference_priority, parts, rf),
        TopicSpec("output", t.output, parts, rf),
        TopicSpec("error", t.error, parts, rf),
        TopicSpec(
            "dead_letter",
            t.dead_letter,
            parts,
            rf,
            {"retention.ms": str(settings.dead_letter_retention_ms)},
            wraps_records_of=settings.max_message_bytes,
        ),
        # Faust needs one topic subscription; nothing is written here yet.
        TopicSpec("control", t.control, 1, rf),
    ]


def describe_cluster(admin: AdminClient, timeout_s: float = 10.0) -> Cluster:
    """The live brokers and the broker's record limit (Kafka's default when its config cannot be read,
    e.g. without the DescribeConfigs permission on a secured cluster)."""
    md = admin.list_topics(timeout=timeout_s)
    limit = BROKER_MESSAGE_MAX_BYTES
    if md.brokers:
        resource = ConfigResource(ConfigResource.Type.BROKER, str(min(md.brokers)))
        try:
            entries = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result(timeout=timeout_s)
            if "message.max.bytes" in entries and entries["message.max.bytes"].value:
                limit = int(entries["message.max.bytes"].value)
        except (KafkaException, TimeoutError):
            pass
    return Cluster(brokers=len(md.brokers), message_max_bytes=limit)


def create_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 15.0) -> dict[str, bool]:
    """Create what is missing; returns name -> True if created now, False if it already existed."""
    cluster = describe_cluster(admin, timeout_s)
    resolved = [s.resolved(cluster) for s in specs]
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=replication_for(cluster.brokers, s.replication),
            config=s.config,
        )
        for s in resolved
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


_SHOWN_CONFIGS = ("retention.ms", "min.insync.replicas", "max.message.bytes", "cleanup.policy")


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


@dataclass(frozen=True)
class Access:
    """What the broker lets this client do with the topics a role needs."""

    missing: list[str]
    # topic -> the operations ("READ", "WRITE") the broker's ACLs refuse on it
    refused: dict[str, list[str]]


def check_access(admin: AdminClient, reads: list[str], writes: list[str], timeout_s: float = 10.0) -> Access:
    """Each topic exists and may be read or written as needed, asked of the broker itself.

    Listing topics cannot tell the two apart: a topic the user may not describe is simply not listed, so
    a missing ACL would read as a missing topic. Describing them with their authorized operations can.
    """
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation

    wanted = {
        name: [op for op, names in (("READ", reads), ("WRITE", writes)) if name in names] for name in {*reads, *writes}
    }
    futures = admin.describe_topics(
        TopicCollection(sorted(wanted)), request_timeout=timeout_s, include_authorized_operations=True
    )
    missing: list[str] = []
    refused: dict[str, list[str]] = {}
    for name, future in futures.items():
        try:
            described = future.result()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                missing.append(name)
            elif code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                refused[name] = ["DESCRIBE", *wanted[name]]
            else:
                raise
            continue
        allowed = {op.name for op in (described.authorized_operations or [])}
        if allowed and AclOperation.ALL.name not in allowed:
            lacking = [op for op in wanted[name] if op not in allowed]
            if lacking:
                refused[name] = lacking
    return Access(sorted(missing), dict(sorted(refused.items())))
