"""Schema ids from a Confluent-compatible registry, each asked for once per process.

Subjects follow the topic-name strategy (``TOPIC-value``). The hot path only reads the dicts here: an id is
fetched (or registered) the first time a topic or an id is seen, then served from memory, so no message
costs an HTTP call. An id the registry does not know is remembered too, for :data:`UNKNOWN_ID_TTL_S`: a
stream of records naming one unknown id costs one lookup, not one per record. ``mock://`` URLs give
confluent-kafka's in-memory mock client (tests without Java).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipeline.serde.codes import ErrorCode
from pipeline.serde.errors import DecodeError, RegistryUnavailable

if TYPE_CHECKING:
    from pipeline.config import Settings


@functools.cache
def client_module() -> ModuleType:
    """confluent-kafka's registry client, imported on first use: it imports authlib's deprecated httpx
    integration, whose warning (authlib forces it on) is theirs and not something our users can act on."""
    with warnings.catch_warnings():
        # authlib turns its own warnings on ("always") when it is imported: let it, then turn this one off.
        with contextlib.suppress(ImportError):
            import authlib.deprecate  # noqa: F401
        warnings.filterwarnings("ignore", message=r".*httpx module is deprecated.*")
        import confluent_kafka.schema_registry as client

        return client


# An unknown id is answered from memory this long: long enough that a flood of records naming it costs one
# lookup every so often, short enough that a schema registered under that id afterwards is read within a
# minute without a restart.
UNKNOWN_ID_TTL_S = 30.0
# Unknown ids remembered at most: random ids from garbage must not grow the memory without bound.
UNKNOWN_IDS_KEPT = 10_000


def value_subject(topic: str) -> str:
    """Topic-name strategy: the subject of a topic's record values."""
    return f"{topic}-value"


class RegistrySchemas:
    """Caches subject -> id (writers) and id -> schema text (readers) in front of a registry client."""

    def __init__(
        self,
        client: Any,
        *,
        auto_register: bool = True,
        unknown_ttl_s: float = UNKNOWN_ID_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.auto_register = auto_register
        self.unknown_ttl_s = unknown_ttl_s
        self._clock = clock
        self._ids: dict[tuple[str, str], int] = {}
        self._texts: dict[int, str] = {}
        self._unknown: dict[int, tuple[float, str]] = {}
        """id -> (until when, why): ids the registry said it does not know, in the order they were asked."""
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, conf: dict[str, Any] | None = None, *, auto_register: bool = True) -> RegistrySchemas:
        client = client_module().SchemaRegistryClient.new_client({"url": url, **(conf or {})})
        return cls(client, auto_register=auto_register)

    def id_for(self, subject: str, schema_text: str) -> int:
        """The id of ``schema_text`` under ``subject``: registered when allowed, else looked up."""
        key = (subject, schema_text)
        found = self._ids.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._ids.get(key)
            if found is not None:
                return found
            module = client_module()
            schema = module.Schema(schema_text, "AVRO")
            try:
                if self.auto_register:
                    schema_id = int(self.client.register_schema(subject, schema))
                else:
                    schema_id = int(self.client.lookup_schema(subject, schema).schema_id)
            except module.SchemaRegistryError as exc:
                raise RegistryUnavailable(f"registry refused schema for subject {subject!r}: {exc}") from exc
            except Exception as exc:  # httpx transport errors and the like
                raise RegistryUnavailable(f"registry not reachable for subject {subject!r}: {exc}") from exc
            self._ids[key] = schema_id
            self._texts.setdefault(schema_id, schema_text)
            return schema_id

    def text_for(self, schema_id: int) -> str:
        """The writer schema of ``schema_id``; an id the registry does not know is the event's fault."""
        found = self._texts.get(schema_id)
        if found is not None:
            return found
        unknown = self._unknown.get(schema_id)
        if unknown is not None:
            if self._clock() < unknown[0]:
                raise DecodeError(ErrorCode.UNKNOWN_SCHEMA, unknown[1])
            self._unknown.pop(schema_id, None)
        header = f"header bytes 00 {schema_id.to_bytes(4, 'big').hex(' ')}"
        try:
            schema = self.client.get_schema(schema_id)
        except client_module().SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise self._unknown_id(
                    schema_id, f"unknown writer schema: registry id {schema_id} ({header}) is not in the registry"
                ) from None
            raise RegistryUnavailable(f"registry error for schema id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise RegistryUnavailable(f"registry not reachable for schema id {schema_id}: {exc}") from exc
        if schema is None or schema.schema_str is None or (schema.schema_type or "AVRO") != "AVRO":
            kind = getattr(schema, "schema_type", None) or "no schema"
            raise self._unknown_id(schema_id, f"registry id {schema_id} ({header}) is not an Avro schema ({kind})")
        self._texts[schema_id] = schema.schema_str
        return str(schema.schema_str)

    def _unknown_id(self, schema_id: int, message: str) -> DecodeError:
        """Remember an id that no record can be read with, for ``unknown_ttl_s``; the error to raise."""
        if self.unknown_ttl_s > 0:
            with self._lock:
                while len(self._unknown) >= UNKNOWN_IDS_KEPT:
                    self._unknown.pop(next(iter(self._unknown)))
                self._unknown[schema_id] = (self._clock() + self.unknown_ttl_s, message)
        return DecodeError(ErrorCode.UNKNOWN_SCHEMA, message)


def shared_registry(settings: Settings) -> RegistrySchemas:
    """One registry client and id cache per registry config per process, shared by all codecs."""
    return _registry_for(tuple(sorted(settings.registry_client_config().items())))


@functools.lru_cache(maxsize=8)
def _registry_for(conf: tuple[tuple[str, Any], ...]) -> RegistrySchemas:
    options = dict(conf)
    return RegistrySchemas.from_url(options.pop("url"), options)
