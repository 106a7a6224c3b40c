"""The admin connection, with a fast and readable failure when the broker cannot be reached.

librdkafka retries an unreachable or misconfigured broker until the call's own timeout and then reports a
generic transport failure; authentication errors only reach the error callback. So we probe metadata in
short steps, watch the callback, and raise one ``BrokerUnavailable`` whose message a person can act on.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from pipeline.config import Settings
from pipeline.kafka.clients import base_config

_FATAL_CODES = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._SSL,
}


def refusal(settings: Settings, err: KafkaError) -> str:
    """One line for a broker that refused us: who we tried to be, where, and which setting to look at.

    librdkafka's own text names neither the user nor the CA file, and a call made meanwhile only times
    out with a generic transport failure; this line is what the operator acts on.
    """
    sec = settings.security
    where = settings.bootstrap_servers
    reason = err.str()
    if err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) or "SASL" in reason:
        return (
            f"SASL {sec.sasl_mechanism or 'PLAIN'} authentication as user {sec.sasl_username or ''!r} failed at "
            f"{where} ({reason}); check security.sasl_username and security.sasl_password "
            "(PIPELINE_SECURITY__SASL_USERNAME, PIPELINE_SECURITY__SASL_PASSWORD)"
        )
    if "certificate verify failed" in reason or "certificate" in reason.lower():
        trusted = sec.ssl_ca_location or "the system's CA store"
        return (
            f"TLS: the broker at {where} presented a certificate that {trusted} does not trust or that does "
            f"not name the host ({reason}); set security.ssl_ca_location to the CA that signed it "
            "(PIPELINE_SECURITY__SSL_CA_LOCATION)"
        )
    if err.code() == KafkaError._SSL:
        return f"TLS handshake with the broker at {where} failed ({reason}); is the listener {sec.security_protocol}?"
    return f"Kafka at {where} refused the connection: {reason}"


class BrokerUnavailable(Exception):
    """The broker could not be reached or refused us; the message is one line for the user."""


class _ErrorLog:
    def __init__(self) -> None:
        self.errors: list[KafkaError] = []

    def __call__(self, err: KafkaError) -> None:
        self.errors.append(err)

    def fatal(self) -> KafkaError | None:
        return next((e for e in self.errors if e.code() in _FATAL_CODES), None)


def connect_admin(settings: Settings, timeout_s: float | None = None, **overrides: Any) -> AdminClient:
    """An AdminClient that has answered a metadata request, or ``BrokerUnavailable``."""
    errors = _ErrorLog()
    admin = AdminClient(base_config(settings, error_cb=errors, **overrides))
    wait_for_metadata(admin, settings, errors, timeout_s)
    return admin


def wait_for_metadata(
    admin: AdminClient, settings: Settings, errors: _ErrorLog | None = None, timeout_s: float | None = None
) -> ClusterMetadata:
    deadline = time.monotonic() + (timeout_s if timeout_s is not None else settings.admin_timeout_s)
    last: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            return admin.list_topics(timeout=min(1.0, remaining))
        except KafkaException as exc:
            last = exc
        admin.poll(0)
        fatal = errors.fatal() if errors else None
        if fatal is not None:
            raise BrokerUnavailable(refusal(settings, fatal))
    detail = ""
    if errors and errors.errors:
        detail = f" ({errors.errors[-1].str()})"
    elif last is not None and last.args:
        err = last.args[0]
        detail = f" ({err.str() if isinstance(err, KafkaError) else err})"
    raise BrokerUnavailable(
        f"cannot reach Kafka at {settings.bootstrap_servers} within "
        f"{timeout_s if timeout_s is not None else settings.admin_timeout_s:g} s{detail}; "
        "is the broker running? (set KAFKA_BOOTSTRAP or start one with infra/kafka/kafka-local start)"
    )
