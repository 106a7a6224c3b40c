"""Secrets out of every output (unit tier): which values are secrets, how they are replaced, and the
places a worker writes text of its own (log lines at debug level with tracebacks, error events, dead-letter
headers). The end-to-end check over a secured broker is tests/e2e/test_secured.py."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.config import ConfigError, KafkaSecurity, Settings, load_settings, split_userinfo
from pipeline.observability.log_format import RedactSecrets, TextFormatter
from pipeline.observability.metrics import Metrics
from pipeline.observability.redact import REDACTED, Redactor
from pipeline.serde import Codecs, ErrorCode, Failure, Stage
from pipeline.stages.failures import FailureRouter
from tests.stages.conftest import Consumed

SASL = "sasl-pass-0f9e"
KEY = "key-pass-77aa"
OAUTH = "oauth-secret-5b5b"
JAAS_INNER = "jaas-inner-c0c0"
REGISTRY = "registry-pass-9d9d"
URL_PASS = "url-pass-4e4e"


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        security=KafkaSecurity(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="svc",
            sasl_password=SecretStr(SASL),
            ssl_key_password=SecretStr(KEY),
            extra={
                "sasl.oauthbearer.client.secret": OAUTH,
                "sasl.jaas.config": f'org.x.ScramLoginModule required username="svc" password="{JAAS_INNER}";',
                "socket.keepalive.enable": "true",
            },
        ),
        schema_registry_url=f"https://reg-user:{URL_PASS}@registry.example:8081/apis/ccompat/v7",
        schema_registry_password=SecretStr(REGISTRY),
        model_cache=tmp_path,
    )


ALL = (SASL, KEY, OAUTH, JAAS_INNER, REGISTRY, URL_PASS)


def test_every_configured_secret_is_known_and_nothing_else(tmp_path: Path) -> None:
    values = _settings(tmp_path).secret_values()
    for secret in ALL:
        assert any(secret in v for v in values), secret
    assert JAAS_INNER in values  # the inner password alone, not only the whole JAAS line
    assert "true" not in values and "svc" not in values  # a non-secret extra and a user name stay readable


def test_the_registry_url_loses_its_user_info_and_the_client_gets_basic_auth(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(update={"schema_registry_ca_location": "/etc/ca.pem"})
    conf = settings.registry_client_config()
    assert conf["url"] == "https://registry.example:8081/apis/ccompat/v7"
    # an explicit password wins over the one in the URL; the URL's user name is kept
    assert conf["basic.auth.user.info"] == f"reg-user:{REGISTRY}"
    assert conf["ssl.ca.location"] == "/etc/ca.pem"
    assert split_userinfo("http://h:1/x") == ("http://h:1/x", None, None)
    assert split_userinfo("http://u%40x:p%3Aw@h/") == ("http://h/", "u@x", "p:w")


def test_the_redactor_replaces_secrets_and_any_url_user_info() -> None:
    redact = Redactor(["s3cret-longer", "s3cret", "ab"])
    assert redact("a s3cret-longer b s3cret") == f"a {REDACTED} b {REDACTED}"
    assert redact("ab stays: too short to be told from words") == "ab stays: too short to be told from words"
    assert redact("GET https://bob:pw@host:8081/x failed") == f"GET https://{REDACTED}@host:8081/x failed"
    assert redact("mail bob@example.com") == "mail bob@example.com"
    assert Redactor()("kafka://u:p@h") == f"kafka://{REDACTED}@h"


def test_log_lines_at_debug_level_never_hold_a_secret(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactSecrets(Redactor(settings.secret_values())))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.debug("config %s and %r", settings.security.librdkafka(), SASL)
        log.debug("registry %s", settings.schema_registry_url)
        try:
            raise RuntimeError(f"auth failed with {KEY} / {OAUTH}")
        except RuntimeError:
            log.exception("traceback with %s", JAAS_INNER)
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "reg-user" not in text and "RuntimeError: auth failed with ***" in text
    for secret in ALL:
        assert secret not in text, secret


def test_an_error_event_and_a_dead_letter_carry_a_failure_text_redacted(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(update={"schema_registry_url": None, "framing": "single-object"})
    codecs = Codecs.from_settings(settings)
    router = FailureRouter(codecs.error, "err", "dlq", "g", Metrics(), redact=Redactor(settings.secret_values()))
    try:
        raise ConnectionError(f"registry https://u:{URL_PASS}@h refused password {SASL}")
    except ConnectionError as exc:
        failure = Failure(Stage.OUTPUT, ErrorCode.OUTPUT_FAILED, str(exc), exception=exc)
    original = f"upstream bytes {SASL}".encode()  # the record's own bytes stay byte for byte
    error, letter = router.route(Consumed(original, headers_=[("h", b"v")]), failure, "b1")
    event = codecs.error.decode(error.value)
    assert REDACTED in event["message"]
    assert letter.value == original
    written = [error.value or b"", *(v or b"" for _k, v in letter.headers or [])]
    for blob in written:
        for secret in (SASL, URL_PASS):
            assert secret.encode() not in blob


def test_an_invalid_secret_setting_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("PIPELINE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIPELINE_SECURITY__EXTRA", '{"sasl.oauthbearer.client.secret": ["x-secret-1"]}')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "security.extra.sasl.oauthbearer.client.secret" in str(caught.value)
    assert "x-secret-1" not in str(caught.value)


def test_the_health_endpoints_bind_the_configured_address_only() -> None:
    import socket
    import urllib.request

    from pipeline.observability.http import HealthServer

    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    outside = next((a for a in addresses if not a.startswith("127.")), None)
    server = HealthServer(0, lambda: {"ok": True}, lambda: b"", host="127.0.0.1").start()
    try:
        assert server._server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz", timeout=5) as resp:
            assert resp.status == 200
        if outside is not None:  # the host's own address is not served
            with pytest.raises(OSError):
                socket.create_connection((outside, server.port), timeout=2).close()
    finally:
        server.stop()
