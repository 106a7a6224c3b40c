"""The pipeline against a secured broker: SASL_SSL with SCRAM-SHA-512, TLS from a test CA with hostname
verification, and ACLs (``infra/kafka/kafka-local start --secure``).

One broker for the module. The whole path runs over it (good events, poison, dead letters, replay, dlq
redrive) with the worker at debug level, and then every byte it and the commands wrote is searched for
the configured secrets: log lines, command output, metrics, and each record of each topic (keys, values,
headers). The refusals (wrong password, no ACLs, untrusted certificate) must each be one clear line, fast.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from pipeline.config import KafkaSecurity, Settings, Topics
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.topics import TopicSpec, create_topics, topic_specs
from pipeline.ops.collect import Record, read_topic
from pipeline.ops.generate import tiny_requests
from pipeline.serde import Codecs, build_request
from tests.harness import REPO, WorkerProcess, env_for, free_port, http_get, produce_raw, wait_count

KAFKA_LOCAL = REPO / "infra" / "kafka" / "kafka-local"
# A secret that only sits in security.extra: the worker must keep it out of everything too.
EXTRA_SECRET = f"oauth-{uuid.uuid4().hex}"


def _exports(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            values[name] = shlex.split(value)[0] if value else ""
    return values


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], dict[str, str], Path]]:
    """(the pipeline user's exports, the outsider's exports, the state folder) of a broker of this module."""
    state = tmp_path_factory.mktemp("secured") / "broker"
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_PORT"}
    env.update(KAFKA_LOCAL_STATE=str(state), KAFKA_LOCAL_PYTHON=sys.executable)

    def kafka_local(*args: str) -> str:
        done = subprocess.run([str(KAFKA_LOCAL), *args], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, f"kafka-local {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout

    kafka_local("start", "--secure")
    try:
        yield _exports(kafka_local("status")), _exports(kafka_local("status", "--user", "outsider")), state
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], capture_output=True, env=env, timeout=120)


def _settings(exports: dict[str, str], **security: object) -> Settings:
    tag = uuid.uuid4().hex[:8]
    fields = {
        "security_protocol": exports["PIPELINE_SECURITY__SECURITY_PROTOCOL"],
        "sasl_mechanism": exports["PIPELINE_SECURITY__SASL_MECHANISM"],
        "sasl_username": exports["PIPELINE_SECURITY__SASL_USERNAME"],
        "sasl_password": SecretStr(exports["PIPELINE_SECURITY__SASL_PASSWORD"]),
        "ssl_ca_location": exports["PIPELINE_SECURITY__SSL_CA_LOCATION"],
        **security,
    }
    return Settings(
        bootstrap_servers=exports["KAFKA_BOOTSTRAP"],
        security=KafkaSecurity(**fields),  # type: ignore[arg-type]
        topics=Topics(**{role: f"{name}.{tag}" for role, name in Topics().all().items()}),
        group=f"pipeline-test-{tag}",
        partitions=2,
        replication_factor=1,
    )


def _cli(settings: Settings, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        cwd=REPO,
        env=env_for(settings, PIPELINE_LOG_LEVEL="debug"),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _blobs(records: list[Record]) -> Iterator[bytes]:
    for r in records:
        yield r.key or b""
        yield r.value or b""
        for name, value in r.headers:
            yield name.encode()
            yield value or b""


def test_the_whole_path_over_sasl_ssl_leaks_no_secret(secured: tuple[dict[str, str], dict[str, str], Path]) -> None:
    exports, _outsider, _state = secured
    settings = _settings(exports, extra={"sasl.oauthbearer.client.secret": EXTRA_SECRET})
    secrets = [exports["PIPELINE_SECURITY__SASL_PASSWORD"], EXTRA_SECRET]
    texts: list[str] = []
    created = _cli(settings, "topics", "create")
    texts += [created.stdout, created.stderr]
    assert created.returncode == 0, created.stderr
    replayed = f"pipeline.replayed.{uuid.uuid4().hex[:8]}"
    create_topics(connect_admin(settings), [TopicSpec(role="replayed", name=replayed, partitions=2)])

    codec = Codecs.from_settings(settings).request
    good = list(tiny_requests(100, seed=11))
    unknown = build_request(model="nope", tensors={"x": np.ones(8, np.float32)})
    poison = [(b"p1", b"\x00garbage", None), (b"p2", codec.encode(unknown), [("trace", b"abc")])]
    port = free_port()
    with WorkerProcess(settings, "--model", "tiny", "--metrics-port", str(port), PIPELINE_LOG_LEVEL="debug") as worker:
        worker.wait_assigned()
        produce_raw(settings, settings.topics.input, [(r["event_id"].encode(), codec.encode(r), None) for r in good])
        produce_raw(settings, settings.topics.input, poison)
        out = read_topic(settings, settings.topics.output, expected=len(good), timeout_s=90)
        assert len(out) == len(good)
        assert wait_count(settings, settings.topics.dead_letter, 2, 30) == 2
        texts.append(http_get(port, "/metrics")[1])
        # operators' commands over the same listener: a replay of the results, a redrive of the dead letters
        replay = _cli(settings, "replay", "--source", settings.topics.output, "--target", replayed)
        texts += [replay.stdout, replay.stderr]
        assert replay.returncode == 0, replay.stderr
        assert len(read_topic(settings, replayed, expected=len(good), timeout_s=30)) == len(good)
        redrive = _cli(settings, "dlq", "redrive")
        texts += [redrive.stdout, redrive.stderr]
        assert redrive.returncode == 0 and "sent 2" in redrive.stdout, redrive.stdout + redrive.stderr
        # the redriven poison fails again: two more dead letters
        assert wait_count(settings, settings.topics.dead_letter, 4, 30) == 4
        texts.append(http_get(port, "/metrics")[1])
    texts.append(worker.output())
    assert "DEBUG" in worker.output()  # the worker did log at debug level
    records: list[Record] = []
    for topic in [*settings.topics.all().values(), replayed]:
        records += read_topic(settings, topic, timeout_s=20, idle_s=1.0)
    assert len(records) >= len(good) * 3 + 2 + 4
    for secret in secrets:
        for text in texts:
            assert secret not in text
        for blob in _blobs(records):
            assert secret.encode() not in blob


def _refused(settings: Settings) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "worker", "--model", "tiny"],
        cwd=REPO,
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - began


def _error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]


def test_a_wrong_password_fails_within_10_s_naming_mechanism_user_and_broker(
    secured: tuple[dict[str, str], dict[str, str], Path],
) -> None:
    exports, _outsider, _state = secured
    settings = _settings(exports, sasl_password=SecretStr("not-the-password"))
    done, took = _refused(settings)
    assert done.returncode != 0 and took < 10, (took, done.stderr)
    lines = _error_lines(done)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "SASL SCRAM-SHA-512 authentication as user 'pipeline' failed" in lines[0], lines
    assert settings.bootstrap_servers in lines[0]
    assert "not-the-password" not in done.stdout + done.stderr
    listed = _cli(settings, "topics", "describe", timeout_s=30)  # a command says the same
    assert listed.returncode != 0 and "authentication as user 'pipeline' failed" in listed.stderr


def test_a_user_without_acls_gets_one_authorization_error_and_no_crash_loop(
    secured: tuple[dict[str, str], dict[str, str], Path],
) -> None:
    exports, outsider, _state = secured
    owner = _settings(exports)
    create_topics(connect_admin(owner), topic_specs(owner))
    settings = _settings(outsider).model_copy(update={"topics": owner.topics, "group": owner.group})
    done, took = _refused(settings)
    assert done.returncode == 1 and took < 30, (took, done.stderr)
    lines = _error_lines(done)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "not authorized" in lines[0] and "'outsider'" in lines[0] and owner.topics.input in lines[0], lines


def test_an_untrusted_broker_certificate_is_refused_with_a_clear_line(
    secured: tuple[dict[str, str], dict[str, str], Path],
) -> None:
    exports, _outsider, state = secured
    other = str(Path(exports["PIPELINE_SECURITY__SSL_CA_LOCATION"]).parent / "other-ca.pem")
    assert Path(other).is_file(), f"kafka-local makes a second CA for this test ({state})"
    settings = _settings(exports, ssl_ca_location=other)
    done, took = _refused(settings)
    assert done.returncode != 0 and took < 15, (took, done.stderr)
    lines = _error_lines(done)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "does not trust" in lines[0] and other in lines[0], lines
