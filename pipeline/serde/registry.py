"""Schema ids from a Confluent-compatible registry, each asked for once per process.

Subjects follow the topic-name strategy (``TOPIC-value``). The hot path only reads the dicts here: an id is
fetched (or registered) the first time a topic or an id is seen, then served from memory, so no message
costs an HTTP call. ``mock://`` URLs give confluent-kafka's in-memory mock client (tests without Java).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from types import ModuleType
from typing import Any

from pipeline.serde.codes import ErrorCode
from pipeline.serde.errors import DecodeError, RegistryUnavailable


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


def value_subject(topic: str) -> str:
    """Topic-name strategy: the subject of a topic's record values."""
    return f"{topic}-value"


class RegistrySchemas:
    """Caches subject -> id (writers) and id -> schema text (readers) in front of a registry client."""

    def __init__(self, client: Any, *, auto_register: bool = True) -> None:
        self.client = client
        self.auto_register = auto_register
        self._ids: dict[tuple[str, str], int] = {}
        self._texts: dict[int, str] = {}
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
        try:
            schema = self.client.get_schema(schema_id)
        except client_module().SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(ErrorCode.UNKNOWN_SCHEMA, f"schema id {schema_id} not in the registry") from None
            raise RegistryUnavailable(f"registry error for schema id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise RegistryUnavailable(f"registry not reachable for schema id {schema_id}: {exc}") from exc
        if schema is None or schema.schema_str is None or (schema.schema_type or "AVRO") != "AVRO":
            raise DecodeError(ErrorCode.UNKNOWN_SCHEMA, f"schema id {schema_id} is not an Avro schema")
        self._texts[schema_id] = schema.schema_str
        return str(schema.schema_str)
