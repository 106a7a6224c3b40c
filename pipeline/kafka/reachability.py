"""Whether a reader's broker answers: what readiness says while it does not, and how it is seen again.

librdkafka's error callback reports every failed connection attempt; only "all brokers down" makes a
reader unreachable, and only once per outage (one log line, one readiness change). While unreachable, the
reader asks for a topic's metadata at most once a second; a record read or an answer ends the outage.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException

from pipeline.observability.health import Health

log = logging.getLogger("pipeline.reader")

_CHECK_S = 1.0  # while the broker is unreachable, how often to ask whether it is back


class Reachability:
    def __init__(self, role: str, topic: str, health: Health | None) -> None:
        self._role = role
        self._topic = topic
        self._health = health
        self.connected = True
        self._next_check = 0.0

    def on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self.connected:
            log.error("%s reader: the broker is unreachable (%s); waiting for it", self._role, err.str())
            self._set(False)

    def check(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _CHECK_S
        try:
            consumer.list_topics(self._topic, timeout=0.5)
        except KafkaException:
            return
        log.warning("%s reader: the broker answers again", self._role)
        self._set(True)

    def answered(self) -> None:
        if not self.connected:
            self._set(True)

    def _set(self, ok: bool) -> None:
        self.connected = ok
        if self._health is not None:
            self._health.connection(self._role, ok)
