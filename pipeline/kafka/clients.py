"""librdkafka configs for the project's clients, built from Settings in one place.

Every client starts from ``Settings.kafka_client_config()`` so that security settings reach all of them,
and its errors go to Python logging instead of librdkafka's own stderr output.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from pipeline.config import Settings

_LOG = logging.getLogger("pipeline.kafka.client")


def base_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {**settings.kafka_client_config(), "logger": _LOG}
    conf.update(overrides)
    return conf


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """acks=all and idempotence: an output counts as written only once every in-sync replica has it."""
    conf = base_config(
        settings,
        **{
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": max(settings.max_message_bytes * 2, 1_048_576),
        },
    )
    conf.update(overrides)
    return conf


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Auto-commit off: the hot path commits only offsets whose outputs the broker acknowledged."""
    conf = base_config(
        settings,
        **{
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Records of transactions that did not commit are never read (what exactly-once relies on;
            # at least once, nothing writes in transactions but replay).
            "isolation.level": "read_committed",
        },
    )
    conf.update(overrides)
    return conf


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS settings as an SSL context, for the clients that are not librdkafka's (Faust's, aiokafka's).

    librdkafka checks the broker's name against its certificate unless told "none": so do these, from the
    same setting (a default context would always check)."""
    sec = settings.security
    context = ssl.create_default_context(cafile=sec.ssl_ca_location)
    algorithm = sec.librdkafka().get("ssl.endpoint.identification.algorithm", "https")
    context.check_hostname = algorithm.lower() != "none"
    if sec.ssl_certificate_location and sec.ssl_key_location:
        password = sec.ssl_key_password.get_secret_value() if sec.ssl_key_password else None
        context.load_cert_chain(sec.ssl_certificate_location, sec.ssl_key_location, password)
    return context
