"""How a worker with an id leaves its consumer groups for good.

A member with a ``group.instance.id`` (static membership) sends no LeaveGroup when it stops: the group
keeps its partitions for it until ``session_timeout_ms`` has passed, so a restart takes them straight back
without a rebalance. A worker that is not coming back (scaled in, its host retired) would leave its
partitions unread for that long. Removing its members by their instance ids ends the wait at once: the
group rebalances, and cooperative-sticky moves only the departed member's partitions.

That removal is a LeaveGroup request (version 3 or later) naming the instance ids, sent to the group's
coordinator: what Kafka's admin API calls removing members from a consumer group. librdkafka has no call
for it, so it goes through aiokafka's client (Faust's, already a dependency), with the same security
settings as every other client. It must come after the worker's consumers are closed: a live member that
is removed rejoins at its next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

from pipeline.config import Settings
from pipeline.kafka.clients import ssl_context

log = logging.getLogger("pipeline.membership")

_GROUP_COORDINATOR = 0


class _LeaveGroupResponseV3(Response):
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")), ("error_code", Int16)),
        ),
    )


class _LeaveGroupRequestV3(RequestStruct):
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponseV3
    SCHEMA = Schema(
        ("group_id", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class _RemoveMembers(Request[_LeaveGroupRequestV3]):
    API_KEY = 13

    def __init__(self, group: str, instance_ids: Sequence[str]) -> None:
        self._group = group
        self._ids = list(instance_ids)

    def build(self, request_struct_class: type[_LeaveGroupRequestV3]) -> _LeaveGroupRequestV3:
        # An empty member id: the member is named by its instance id alone, whatever its member id now.
        return request_struct_class(self._group, [("", instance) for instance in self._ids])


@dataclass(frozen=True)
class Removal:
    group: str
    instance_id: str
    error: str | None  # None: removed; else the broker's answer (UNKNOWN_MEMBER_ID: it was not a member)


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """aiokafka's names for the security settings every librdkafka client gets."""
    sec = settings.security
    conf: dict[str, Any] = {"security_protocol": sec.security_protocol}
    if sec.security_protocol in ("SSL", "SASL_SSL"):
        conf["ssl_context"] = ssl_context(settings)
    if sec.security_protocol.startswith("SASL"):
        conf["sasl_mechanism"] = sec.sasl_mechanism or "PLAIN"
        conf["sasl_plain_username"] = sec.sasl_username or ""
        conf["sasl_plain_password"] = sec.sasl_password.get_secret_value() if sec.sasl_password else ""
    return conf


async def _remove(settings: Settings, members: Sequence[tuple[str, str]]) -> list[Removal]:
    client = AIOKafkaClient(
        bootstrap_servers=settings.bootstrap_servers.split(","),
        client_id=f"{settings.group}.membership",
        request_timeout_ms=int(settings.admin_timeout_s * 1000),
        **aiokafka_security(settings),
    )
    await client.bootstrap()
    try:
        by_group: dict[str, list[str]] = {}
        for group, instance in members:
            by_group.setdefault(group, []).append(instance)
        removals: list[Removal] = []
        for group, instances in by_group.items():
            node = await client.coordinator_lookup(_GROUP_COORDINATOR, group)
            response = await client.send(node, _RemoveMembers(group, instances), group=ConnectionGroup.COORDINATION)
            if response.error_code:
                failed = for_code(response.error_code).__name__
                removals += [Removal(group, instance, failed) for instance in instances]
                continue
            for _member_id, instance, code in response.members:
                removals.append(Removal(group, instance, for_code(code).__name__ if code else None))
        return removals
    finally:
        await client.close()


def remove_members(settings: Settings, members: Sequence[tuple[str, str]]) -> list[Removal]:
    """Remove static members, given as (group, instance id), from their groups; blocking (it runs its own
    event loop, so call it off any running one). Raises on a broker that cannot be reached in time."""
    timeout = settings.admin_timeout_s * 2
    return asyncio.run(asyncio.wait_for(_remove(settings, members), timeout))
