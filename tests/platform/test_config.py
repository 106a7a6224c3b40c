"""Settings precedence: keyword > KAFKA_BOOTSTRAP > PIPELINE_* env > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_settings

TOML = """
bootstrap_servers = "toml-host:9092"
group = "from-toml"
batch_size = 64
batch_max_wait_ms = 7
model = "tiny"

[topics]
input = "custom.input"

[security]
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "svc"
sasl_password = "hunter2"
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("PIPELINE_") or key == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(key)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.topics.input == "pipeline.input"
    assert s.topics.inference == "pipeline.inference"
    assert s.topics.output == "pipeline.output"
    assert s.topics.error == "pipeline.error"
    assert s.topics.dead_letter == "pipeline.dead-letter"
    assert s.kafka_client_config() == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "plaintext"}


def test_toml_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(TOML)
    s = load_settings(path)
    assert (s.bootstrap_servers, s.group, s.batch_size, s.batch_max_wait_ms, s.model) == (
        "toml-host:9092",
        "from-toml",
        64,
        7,
        "tiny",
    )
    assert s.topics.input == "custom.input"
    assert s.topics.output == "pipeline.output"  # untouched fields keep their defaults
    conf = s.kafka_client_config()
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == "hunter2"
    assert "hunter2" not in repr(s)  # secrets never show in a repr (and so in logs)


def test_env_beats_toml_and_kafka_bootstrap_beats_both(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(TOML)
    clean_env.setenv("PIPELINE_CONFIG", str(path))
    clean_env.setenv("PIPELINE_GROUP", "from-env")
    clean_env.setenv("PIPELINE_TOPICS__OUTPUT", "env.output")
    clean_env.setenv("PIPELINE_BOOTSTRAP_SERVERS", "env-host:1")
    s = load_settings()
    assert s.group == "from-env"
    assert s.topics.output == "env.output"
    assert s.topics.input == "custom.input"
    assert s.bootstrap_servers == "env-host:1"
    clean_env.setenv("KAFKA_BOOTSTRAP", "kb-host:2")
    assert load_settings().bootstrap_servers == "kb-host:2"
    assert load_settings(bootstrap_servers="kw:3").bootstrap_servers == "kw:3"


def test_bad_values_are_clear_errors(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    clean_env.setenv("PIPELINE_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="batch_size"):
        load_settings()
    clean_env.delenv("PIPELINE_BATCH_SIZE")
    bad = tmp_path / "bad.toml"
    bad.write_text("group = [unterminated")
    with pytest.raises(ConfigError):
        load_settings(bad)


def test_an_invalid_setting_is_one_line_naming_it_and_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PIPELINE_BATCH_SIZE", "0")
    clean_env.setenv("PIPELINE_SECURITY__SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert "setting batch_size (PIPELINE_BATCH_SIZE): Input should be greater than or equal to 1 (got '0')" in message
    assert "setting security.security_protocol (PIPELINE_SECURITY__SECURITY_PROTOCOL)" in message and "'TLS'" in message
