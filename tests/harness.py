"""The end-to-end harness: run a real `pipeline worker` process, feed it, and read what it wrote. Shared by
the tests, the benchmark and the figures script; not part of the installed package."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import Producer

from pipeline.config import Settings
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.clients import producer_config
from pipeline.kafka.topics import create_topics, topic_specs
from pipeline.ops.collect import Record
from pipeline.serde import Codecs

REPO = Path(__file__).resolve().parents[1]  # the checkout the worker runs from


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["KAFKA_BOOTSTRAP"] = settings.bootstrap_servers
    env["PIPELINE_GROUP"] = settings.group
    env["PIPELINE_PARTITIONS"] = str(settings.partitions)
    env["PIPELINE_MODEL_CACHE"] = str(settings.model_cache)
    env["PIPELINE_LOG_LEVEL"] = "info"
    for role, name in settings.topics.all().items():
        env[f"PIPELINE_TOPICS__{role.upper()}"] = name
    env.update(security_env(settings))
    env.update(extra)
    return env


def security_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the same Kafka security settings."""
    env: dict[str, str] = {}
    for name, value in settings.security:
        if name == "extra":
            env.update({f"PIPELINE_SECURITY__EXTRA__{k}": v for k, v in value.items()})
        elif value is not None:
            shown = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            env[f"PIPELINE_SECURITY__{name.upper()}"] = shown
    return env


def create_pipeline_topics(settings: Settings) -> None:
    create_topics(connect_admin(settings), topic_specs(settings))


class WorkerProcess:
    """`pipeline worker` in a subprocess; its output is kept and scanned for readiness."""

    def __init__(self, settings: Settings, *args: str, **env: str) -> None:
        self.cmd = [sys.executable, "-m", "pipeline.cli.main", "worker", *args]
        self.env = env_for(settings, **env)
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_assigned(self, role: str = "inference", timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        needle = f"{role} reader: assigned"
        while time.monotonic() < deadline:
            if any(needle in line for line in self.lines):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.output()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"worker not ready within {timeout_s}s:\n{self.output()[-4000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.alive():
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()


def produce_raw(
    settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]]
) -> int:
    producer = Producer(producer_config(settings))
    n = 0
    for key, value, headers in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers or None)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
        if n % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return n


def produce_requests(
    settings: Settings, requests: Iterable[dict[str, Any]], topic: str | None = None, keyed: bool = True
) -> list[str]:
    codec = Codecs.from_settings(settings).request
    ids: list[str] = []

    def records() -> Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]]:
        for req in requests:
            ids.append(req["event_id"])
            yield (req["event_id"].encode() if keyed else None), codec.encode(req), None

    produce_raw(settings, topic or settings.topics.input, records())
    return ids


def wait_count(settings: Settings, topic: str, at_least: int, timeout_s: float) -> int:
    """Wait until ``topic`` holds ``at_least`` records (or the timeout); returns how many it holds."""
    from pipeline.ops.collect import count

    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = count(settings, topic)
        if seen >= at_least:
            return seen
        time.sleep(0.05)
    return seen


def free_port() -> int:
    """A loopback port nothing listens on now (for a worker's --metrics-port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, str]:
    """A worker's endpoint on loopback: status and body (0 and "" while nothing answers)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def http_json(port: int, path: str) -> tuple[int, dict[str, object]]:
    """A probe's status and its JSON body ({} while nothing answers)."""
    status, body = http_get(port, path)
    return status, json.loads(body) if body else {}


class Polled(NamedTuple):
    status: int  # the last answer's: the wanted one, or whatever came when time ran out
    body: dict[str, object]
    seen: frozenset[int]  # every status answered on the way, so a test can tell it passed through one


def poll_http(port: int, path: str, until: int, timeout_s: float, interval_s: float = 0.1) -> Polled:
    """Ask a probe until it answers `until` or `timeout_s` passes. Probes change state between two
    samples (a batch retried between backoffs, a model still warming), so one sample proves nothing;
    the caller asserts on the last answer, which carries the body to show when it is the wrong one."""
    deadline = time.monotonic() + timeout_s
    seen: set[int] = set()
    while True:
        status, body = http_json(port, path)
        seen.add(status)
        if status == until or time.monotonic() > deadline:
            return Polled(status, body, frozenset(seen))
        time.sleep(interval_s)


def assert_per_key_order(sent: list[dict[str, object]], out: list[Record], settings: Settings) -> None:
    """Per key, the events' results first appear in the order the events went in (the output topic is
    read partition by partition, and a key lives in one partition)."""
    codec = Codecs.from_settings(settings).result
    position = {str(s["event_id"]): i for i, s in enumerate(sent)}
    firsts: dict[bytes | None, list[int]] = {}
    seen: set[str] = set()
    for record in sorted(out, key=lambda r: (r.partition, r.offset)):
        event_id = codec.decode(record.value)["event_id"]
        if event_id in seen:
            continue
        seen.add(event_id)
        firsts.setdefault(record.key, []).append(position[event_id])
    assert len(firsts) == len({s["key"] for s in sent})
    for key, order in firsts.items():
        assert order == sorted(order), f"results of {key!r} out of order"
