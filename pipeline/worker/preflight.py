"""What a worker checks before it starts anything: the broker, its topics, the schema registry (in
registry mode) and the model. A wrong one is one clear line and a non-zero exit at start, not a traceback
at the first record (or a worker that looks fine and answers nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.config import Settings, split_userinfo
from pipeline.kafka.admin import BrokerUnavailable, connect_admin
from pipeline.kafka.topics import check_access, describe_cluster, replication_for
from pipeline.model.errors import ModelError
from pipeline.model.registry import load_registry, resolve_model_file


class PreflightError(Exception):
    """Something the worker needs is missing or wrong; the message is one line for the operator."""


def preflight(settings: Settings, roles: Sequence[str]) -> Settings:
    """Raise :class:`PreflightError` naming the first thing that is wrong; return the settings with what
    follows from the cluster filled in (the replication factor Faust creates its own topics with, by the
    same rule as `pipeline topics create`)."""
    try:
        admin = connect_admin(settings)
    except BrokerUnavailable as exc:
        raise PreflightError(str(exc)) from None
    if settings.replication_factor is None:
        brokers = describe_cluster(admin, settings.admin_timeout_s).brokers
        settings = settings.model_copy(update={"replication_factor": replication_for(brokers)})
    t = settings.topics
    reads, writes = [t.control], [t.error, t.dead_letter]
    if "input" in roles:
        reads.append(t.input)
        writes += [t.inference, t.inference_priority]
    if "inference" in roles:
        reads += [t.inference, t.inference_priority]
        writes.append(t.output)
    access = check_access(admin, reads, writes, settings.admin_timeout_s)
    if access.refused:
        user = settings.security.sasl_username or "this client"
        refused = "; ".join(f"{', '.join(ops)} on {topic}" for topic, ops in access.refused.items())
        raise PreflightError(
            f"not authorized: the ACLs on {settings.bootstrap_servers} refuse user {user!r} {refused} "
            "(TOPIC_AUTHORIZATION_FAILED); grant them to its principal, or use the pipeline's user"
        )
    if access.missing:
        raise PreflightError(
            f"topic(s) {', '.join(access.missing)} missing on {settings.bootstrap_servers}: "
            "run `pipeline topics create`"
        )
    if settings.schema_registry_url:
        _check_registry(settings)
    if "inference" in roles:
        try:
            resolve_model_file(load_registry(settings.models_file).get(settings.model), settings.model_cache)
        except ModelError as exc:
            raise PreflightError(str(exc)) from None
    return settings


def _check_registry(settings: Settings) -> None:
    """Reachable, and the worker may register what it writes: the result and error schemas under their
    topics' subjects (the same calls the worker makes at its first write). The codec's modules are imported
    here, in registry mode only: a supervisor that checks a single-object worker never loads them."""
    from pipeline.serde.codec import CHAINS
    from pipeline.serde.errors import RegistryUnavailable
    from pipeline.serde.registry import shared_registry, value_subject
    from pipeline.serde.store import shared_store

    assert settings.schema_registry_url is not None
    url = split_userinfo(settings.schema_registry_url)[0]
    store = shared_store(settings.schemas_dir)
    try:
        registry = shared_registry(settings)
        for topic, chain in ((settings.topics.output, CHAINS["result"]), (settings.topics.error, CHAINS["error"])):
            registry.id_for(value_subject(topic), store.get(chain).text)
    except RegistryUnavailable as exc:
        raise PreflightError(f"schema registry at {url}: {exc}") from None
    except Exception as exc:  # a URL that is not one, a client that cannot be made
        raise PreflightError(f"schema registry at {url}: {type(exc).__name__}: {exc}") from None
