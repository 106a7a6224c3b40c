"""Settings for every command, worker, test and script.

Sources, highest priority first: explicit keyword arguments, ``KAFKA_BOOTSTRAP`` (honoured everywhere so
that one variable points the whole project at a broker), ``PIPELINE_*`` environment variables (nested
fields with ``__``, e.g. ``PIPELINE_TOPICS__INPUT``), an optional TOML file (``--config`` or
``PIPELINE_CONFIG``), then the defaults below.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
ProcessPerRole = Literal["auto", "on", "off"]
CONFIG_ENV = "PIPELINE_CONFIG"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP"
# A ``security.extra`` key whose value is a secret (an OAuth client secret, a JAAS line, a PEM key, a keystore
# password): such values are redacted wherever they could be written, like the named password fields.
SECRET_KEY = re.compile(r"password|secret|token|credential|jaas|private|api[._-]?key|oauthbearer\.config|\.pem$", re.I)
# ``name="value"`` or ``name=value`` pairs inside a secret value (a JAAS line): the inner secret alone is
# redacted too, in case a library prints it without its surroundings.
_INNER_SECRET = re.compile(r"(?i)(?:password|secret|token)\w*\s*=\s*\"?([^\"\s;,]+)")


def default_model_cache() -> Path:
    """The cache outlives a clone so that CI and later sessions skip the (minutes-long) export."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-inference-pipeline" / "models"


class KafkaSecurity(BaseModel):
    """Client security settings, passed unchanged to every Kafka client the project makes."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    ssl_endpoint_identification_algorithm: str | None = None
    # Any other librdkafka property, for what the fields above do not name. A value whose key names a
    # secret (SECRET_KEY) is redacted like the password fields.
    extra: dict[str, str] = Field(default_factory=dict)

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, in clear: what redaction must keep out of any output."""
        values = [s.get_secret_value() for s in (self.sasl_password, self.ssl_key_password) if s is not None]
        for key, value in self.extra.items():
            if SECRET_KEY.search(key):
                values.append(value)
                values.extend(m.group(1) for m in _INNER_SECRET.finditer(value))
        return values

    def librdkafka(self) -> dict[str, str]:
        conf: dict[str, str] = {"security.protocol": self.security_protocol.lower()}
        plain = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.endpoint.identification.algorithm": self.ssl_endpoint_identification_algorithm,
        }
        conf.update({k: v for k, v in plain.items() if v is not None})
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        conf.update(self.extra)
        return conf


class Topics(BaseModel):
    input: str = "pipeline.input"
    inference: str = "pipeline.inference"
    inference_priority: str = "pipeline.inference.priority"
    output: str = "pipeline.output"
    error: str = "pipeline.error"
    dead_letter: str = "pipeline.dead-letter"
    control: str = "pipeline.control"

    def all(self) -> dict[str, str]:
        """Role -> topic name, in the order of the data path."""
        return self.model_dump()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    # Kafka
    bootstrap_servers: str = "127.0.0.1:9092"
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    topics: Topics = Field(default_factory=Topics)
    partitions: int = Field(default=4, ge=1)
    # None: follow the cluster, min(3, its brokers); pipeline/kafka/topics.py holds the rule.
    replication_factor: int | None = Field(default=None, ge=1)
    dead_letter_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=-1)
    group: str = "pipeline"
    worker_id: str | None = None
    admin_timeout_s: float = Field(default=10.0, gt=0)

    # Events
    framing: Literal["single-object", "confluent"] = "single-object"
    # The registry's URL; user info in it (https://user:password@host) is taken out and sent as basic auth,
    # so the URL that clients print carries no password.
    schema_registry_url: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    # A CA file (PEM) to trust for an https registry (default: the system's), and a client certificate
    # and key for registries that ask for one.
    schema_registry_ca_location: str | None = None
    schema_registry_certificate_location: str | None = None
    schema_registry_key_location: str | None = None
    schemas_dir: Path = REPO_ROOT / "schemas"
    max_message_bytes: int = Field(default=1_000_000, gt=0)
    # Other teams write the input topic: a few bytes can claim a huge shape, a record can be one long text
    # or thousands of tiny items. Each cap fails such a record with a code of its own before anything it
    # sizes is allocated (pipeline/serde/limits.py). Elements per tensor (16M: 64 MiB of float32); chars
    # per string field (the text, names, attributes); items per array or map (tensors, shape dims,
    # attributes).
    max_tensor_elements: int = Field(default=16_777_216, ge=1)
    max_text_chars: int = Field(default=100_000, ge=1)
    max_items: int = Field(default=10_000, ge=1)

    # Model
    model: str = "minilm-l6"
    models_file: Path = REPO_ROOT / "models.toml"
    model_cache: Path = Field(default_factory=default_model_cache)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int | None = Field(default=None, ge=0)
    # A model batch whose runs typically take less than this runs on the event loop itself: for a small
    # model the hop to the model thread and back costs more than the run. 0: always on the model thread.
    model_inline_max_ms: float = Field(default=1.0, ge=0)
    # A model batch still running after this long is cancelled and its events fail as TIMEOUT (retryable):
    # a stuck model or device must not hold a partition forever. A model's own `batch_timeout_ms` in
    # models.toml wins. 0: no deadline.
    model_batch_timeout_ms: int = Field(default=30_000, ge=0)

    # Hot path. A role's reader hands its agent a batch at N events, at once when the agent is idle, or W ms
    # after its first event while no batch waits in the agent's queue (pipeline/kafka/batching.py).
    batch_size: int = Field(default=32, ge=1)  # events per model run (the inference role's N)
    batch_max_wait_ms: int = Field(default=20, ge=0)  # W, for both roles
    input_batch_size: int = Field(default=500, ge=1)  # the input role's N
    # A fast model gets items of several model batches (one hand-off and one commit for many): as many as
    # typically run within this budget, up to this many events.
    inference_item_budget_ms: int = Field(default=20, ge=0)
    inference_item_max_events: int = Field(default=480, ge=1)
    # What each reader's client fetches ahead of the batches it hands over, in KiB (librdkafka's
    # queued.max.messages.kbytes): its 64 MiB default fills under a backlog in every reader of every
    # process, where a few batches ahead keep the agent as busy. A record larger than this is still fetched.
    reader_prefetch_kbytes: int = Field(default=4096, ge=64)
    # How long the broker may hold a bulk reader's fetch to gather more records (librdkafka's
    # fetch.wait.max.ms, with a fetch.min.bytes that a stream does not reach first). librdkafka's defaults
    # answer a fetch as soon as one record is there, so a stream arrives a few records per fetch, and each
    # fetch wakes the client, the reader and the event loop in both role processes and costs the broker a
    # request. The price: a record may wait this long in the broker, and an idle reader fetches this often
    # instead of twice a second. 0: librdkafka's defaults. The priority lane always keeps them (latency first).
    reader_fetch_wait_ms: int = Field(default=10, ge=0, le=500)
    # What the inference reader keeps fetched ahead of a slow model, in the model's time: that many events at
    # the default model's warm pace (librdkafka's queued.min.messages). Once it holds them it stops fetching;
    # a reader that had fetched a whole backlog would otherwise ask the broker every reader_fetch_wait_ms
    # for records not there yet, which costs the model's threads cores. A fast model's count is past
    # librdkafka's own (100,000), which stays. 0: off.
    inference_fetch_ahead_ms: int = Field(default=1000, ge=0)
    # A broker outage shorter than the session costs no rebalance (nothing is read twice); a worker that
    # dies without a worker id gives its partitions to the others after this long.
    session_timeout_ms: int = Field(default=30_000, ge=1000)
    # A worker with an id keeps its partitions through a stop (a restart takes them back at once); one that
    # stops for good with this set removes its members, so its partitions move now, not after the session.
    leave_on_stop: bool = False
    # How soon a member learns that its group rebalances (a worker joined or left): partitions that move
    # wait about this long for their new owner.
    heartbeat_interval_ms: int = Field(default=250, ge=10)
    drain_timeout_s: float = Field(default=8.0, gt=0)
    # at_least_once: outputs acknowledged, then their inputs committed (a crash answers the events in flight
    # twice). exactly_once: each role's outputs and its consumed offsets commit in one transaction per
    # commit interval; read with read_committed, each event is answered once whatever crashes.
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # A transaction left open by a worker that died is aborted after this (a restart with the same worker
    # id aborts it at once); read_committed readers wait for it meanwhile.
    transaction_timeout_ms: int = Field(default=10_000, ge=1000)
    # Offsets are committed at most this often; after a crash, the events answered twice are those in
    # flight (at most three items per role) plus those answered within one interval.
    commit_interval_ms: int = Field(default=100, ge=0)
    # Produce retries (transient broker errors), before a batch is given up and read again.
    retry_max_attempts: int = Field(default=5, ge=1)
    retry_base_delay_ms: int = Field(default=100, ge=0)
    # A batch that fails for a cause outside its events (broker, registry, model) is read again after a
    # backoff that doubles while the same offset keeps failing, up to the cap.
    rewind_backoff_ms: int = Field(default=200, ge=0)
    rewind_backoff_max_ms: int = Field(default=30_000, ge=0)
    # Records written and not yet acknowledged; past it the readers hand over nothing until the broker
    # catches up (a long outage under a backlog then fills no queue).
    max_in_flight_outputs: int = Field(default=20_000, ge=100)
    # The model's circuit breaker: it opens after this many failed model batches in a row (the model, not
    # the events: it did not answer a known-good probe either), then probes with a growing backoff.
    breaker_failures: int = Field(default=3, ge=1)
    breaker_backoff_ms: int = Field(default=1_000, ge=1)
    breaker_backoff_max_ms: int = Field(default=30_000, ge=1)
    # /healthz fails when a role has had work in flight, held nothing on purpose and committed nothing
    # for this long.
    stall_timeout_s: float = Field(default=120.0, gt=0)
    # Young-generation threshold of Python's cyclic garbage collector in a worker (0: Python's own, 700).
    # Python's default runs a collection every few hundred allocations and full ones that walk the whole
    # heap; see pipeline/worker/gc.py.
    gc_gen0_threshold: int = Field(default=50_000, ge=0)
    # Run the input and inference roles as processes of their own under one supervisor ("auto": when the
    # worker runs both roles and may use 2 or more CPUs); see pipeline/worker/layout.py.
    process_per_role: ProcessPerRole = "auto"

    # Hooks: dotted paths ("package.module:function"), called per event and timed.
    hooks_pre: list[str] = Field(default_factory=list)
    hooks_post: list[str] = Field(default_factory=list)
    hooks_error: list[str] = Field(default_factory=list)
    # A hook call running longer than this is interrupted and fails its event as TIMEOUT (stage HOOK): a
    # hook runs on the event loop, where a stuck one would stall the whole worker. 0: no deadline.
    hook_timeout_ms: int = Field(default=1000, ge=0)

    # Operations
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # The address /metrics, /healthz and /readyz bind to: every interface by default (an orchestrator's
    # probes and a scraper come from outside the pod); 127.0.0.1 keeps them on the host.
    metrics_host: str = "0.0.0.0"
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"

    @field_validator("bootstrap_servers")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("bootstrap_servers must not be empty")
        return v.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _BootstrapEnvSource(settings_cls)]
        sources.append(env_settings)
        toml_path = os.environ.get(CONFIG_ENV)
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    def kafka_client_config(self) -> dict[str, str]:
        """The base librdkafka config every confluent-kafka client starts from."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.security.librdkafka()}

    def registry_client_config(self) -> dict[str, Any]:
        """The schema registry client's config: the URL without user info, basic auth and TLS files."""
        assert self.schema_registry_url is not None
        url, user, password = split_userinfo(self.schema_registry_url)
        if self.schema_registry_username is not None:
            user = self.schema_registry_username
        if self.schema_registry_password is not None:
            password = self.schema_registry_password.get_secret_value()
        conf: dict[str, Any] = {"url": url}
        if user is not None:
            conf["basic.auth.user.info"] = f"{user}:{password or ''}"
        files = {
            "ssl.ca.location": self.schema_registry_ca_location,
            "ssl.certificate.location": self.schema_registry_certificate_location,
            "ssl.key.location": self.schema_registry_key_location,
        }
        conf.update({k: v for k, v in files.items() if v is not None})
        return conf

    def secret_values(self) -> list[str]:
        """Every secret the settings hold, in clear, longest first (so a secret that contains another is
        replaced whole): passwords, secret ``security.extra`` values, user info in the registry URL."""
        values = self.security.secret_values()
        if self.schema_registry_password is not None:
            values.append(self.schema_registry_password.get_secret_value())
        if self.schema_registry_url:
            _url, user, password = split_userinfo(self.schema_registry_url)
            if password:
                values += [password, f"{user}:{password}"]
        return sorted({v for v in values if v}, key=len, reverse=True)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``https://user:pass@host/x`` -> (``https://host/x``, user, pass); a URL without user info is kept."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password) if sep else None


class _BootstrapEnvSource(PydanticBaseSettingsSource):
    """``KAFKA_BOOTSTRAP`` wins over ``PIPELINE_BOOTSTRAP_SERVERS`` and the TOML file."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        value = os.environ.get(BOOTSTRAP_ENV)
        return {"bootstrap_servers": value} if value else {}


class ConfigError(Exception):
    """A configuration file or value that cannot be used; its message is meant for the user."""


def env_name(loc: tuple[Any, ...]) -> str:
    """The environment variable of a setting's location (``("topics", "input")`` ->
    ``PIPELINE_TOPICS__INPUT``); ``bootstrap_servers`` is also ``KAFKA_BOOTSTRAP``."""
    name = "PIPELINE_" + "__".join(str(part).upper() for part in loc if not isinstance(part, int))
    return f"{BOOTSTRAP_ENV} or {name}" if loc == ("bootstrap_servers",) else name


def describe_invalid(exc: Any) -> str:
    """One line naming each invalid setting, its environment variable, what is wrong and what was given."""
    problems = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        setting = ".".join(str(part) for part in loc) or "settings"
        given = error.get("input")
        secret = any(SECRET_KEY.search(str(part)) for part in loc)  # an invalid password is still one
        shown = f" (got {given!r})" if given is not None and not isinstance(given, dict) and not secret else ""
        problems.append(f"setting {setting} ({env_name(loc)}): {error.get('msg', 'invalid')}{shown}")
    return "invalid configuration: " + "; ".join(problems)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings, reading ``config_file`` (or ``$PIPELINE_CONFIG``) as TOML when given."""
    from pydantic import ValidationError

    previous = os.environ.get(CONFIG_ENV)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        os.environ[CONFIG_ENV] = str(path)
    elif previous and not Path(previous).is_file():
        raise ConfigError(f"config file not found: {previous} (from ${CONFIG_ENV})")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_invalid(exc)) from None
    except Exception as exc:  # tomllib errors and the like
        raise ConfigError(f"cannot read configuration: {exc}") from None
    finally:
        if config_file is not None:
            if previous is None:
                os.environ.pop(CONFIG_ENV, None)
            else:
                os.environ[CONFIG_ENV] = previous
