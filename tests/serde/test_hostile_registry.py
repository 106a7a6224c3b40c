"""Registry mode against a hostile producer, on confluent-kafka's in-memory mock registry (unit tier):
writer schemas that would make reading cost without bound are refused once, a later version of our record
that we cannot read is SCHEMA_TOO_NEW, and an unknown id costs one lookup, not one per record."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from pipeline.serde import DecodeError, ErrorCode, EventCodec, SchemaStore, Stage, build_request, validate_request
from pipeline.serde.registry import UNKNOWN_ID_TTL_S, RegistrySchemas, client_module
from pipeline.serde.schema_guard import MAX_DEPTH, unbounded_reads

from .test_limits import zigzag

REQ = "inference_request"


@pytest.fixture
def schemas() -> RegistrySchemas:
    return RegistrySchemas.from_url(f"mock://hostile-{uuid.uuid4().hex[:8]}")


def _register(schemas: RegistrySchemas, schema: dict[str, Any], subject: str = "in-value") -> int:
    return int(schemas.client.register_schema(subject, client_module().Schema(json.dumps(schema), "AVRO")))


def _codec(store: SchemaStore, schemas: RegistrySchemas) -> EventCodec:
    return EventCodec(store, REQ, framing="confluent", registry=schemas, topic="in", validator=validate_request)


def _request_v2(store: SchemaStore) -> dict[str, Any]:
    return json.loads(store.get(REQ).text)


def _body(store: SchemaStore) -> bytes:
    """A v2 request's Avro body (what follows any header)."""
    return EventCodec(store, REQ).encode(build_request(model="tiny", text="hi"))[10:]


def _frame(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


# ------------------------------------------------------------------ writer schemas refused


def test_an_array_of_items_that_take_no_bytes_is_refused(store: SchemaStore, schemas: RegistrySchemas) -> None:
    """A later version with a skipped field of nulls: a count of 2**62 there looped for ever. A million
    here would take a while to read without the guard, and decode."""
    writer = _request_v2(store)
    writer["fields"].append({"name": "junk", "type": {"type": "array", "items": "null"}, "default": []})
    schema_id = _register(schemas, writer)
    codec = _codec(store, schemas)
    for count in (10**6, 2**62):
        started = time.perf_counter()
        with pytest.raises(DecodeError) as info:
            codec.decode(_frame(schema_id, _body(store) + zigzag(count) + zigzag(0)))
        assert time.perf_counter() - started < 0.5
        assert info.value.code is ErrorCode.SCHEMA_RESOLUTION_FAILED
        assert info.value.message == (
            f"registry id {schema_id}: writer schema refused, junk: an array of items that take no bytes"
        )


def test_a_recursive_writer_is_refused(store: SchemaStore, schemas: RegistrySchemas) -> None:
    """Each level of a recursive type takes a byte: a million of them crashed the process in fastavro's
    compiled reader. A hundred would decode without the guard."""
    node = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    writer = _request_v2(store)
    writer["fields"].append({"name": "chain", "type": ["null", node], "default": None})
    schema_id = _register(schemas, writer)
    with pytest.raises(DecodeError) as info:
        _codec(store, schemas).decode(_frame(schema_id, _body(store) + b"\x02" * 100 + b"\x00"))
    assert info.value.code is ErrorCode.SCHEMA_RESOLUTION_FAILED
    assert "chain.next: type pipeline.events.Node contains itself (a recursive type)" in info.value.message


def test_the_guard_on_shapes_of_schema() -> None:
    assert unbounded_reads({"type": "array", "items": {"type": "record", "name": "E", "fields": []}}) == (
        "schema: an array of items that take no bytes"
    )
    assert unbounded_reads({"type": "array", "items": {"type": "fixed", "name": "F", "size": 0}}) is not None
    assert unbounded_reads({"type": "map", "values": "null"}) is None  # each entry has a key
    assert unbounded_reads({"type": "array", "items": ["null", "int"]}) is None  # a union index is a byte
    deep: Any = "int"
    for _ in range(MAX_DEPTH):
        deep = {"type": "array", "items": deep}
    assert unbounded_reads(deep) == f"nested more than {MAX_DEPTH} levels deep"
    tree = {"type": "record", "name": "T", "fields": [{"name": "kids", "type": {"type": "array", "items": "T"}}]}
    assert "contains itself" in (unbounded_reads(tree) or "")


def test_every_shipped_schema_passes_the_guard(store: SchemaStore) -> None:
    for sv in store:
        assert unbounded_reads(sv.schema) is None, sv.label


# ------------------------------------------------------------------ versions from the future


def test_a_later_version_we_cannot_resolve_is_schema_too_new(store: SchemaStore, schemas: RegistrySchemas) -> None:
    """A v3 written upstream that turned ``created_at`` into a string: same record, our v2 cannot read it."""
    v3 = _request_v2(store)
    for fld in v3["fields"]:
        if fld["name"] == "created_at":
            fld["type"] = "string"
    schema_id = _register(schemas, v3)
    with pytest.raises(DecodeError) as info:
        _codec(store, schemas).decode(_frame(schema_id, b"\x00"))
    assert info.value.code is ErrorCode.SCHEMA_TOO_NEW and info.value.stage is Stage.DECODE
    message = info.value.message
    assert message.startswith(f"registry id {schema_id}: a version of pipeline.events.InferenceRequest newer than")
    assert "created_at" in message and "upgrade the pipeline's schemas" in message


def test_a_later_version_we_can_resolve_is_read(store: SchemaStore, schemas: RegistrySchemas) -> None:
    v3 = _request_v2(store)
    v3["fields"].append({"name": "region", "type": "string", "default": "eu", "doc": "v3"})
    schema_id = _register(schemas, v3)
    request = build_request(model="tiny", text="hi")
    body = EventCodec(store, REQ).encode(request)[10:] + zigzag(2) + b"us"
    assert _codec(store, schemas).decode(_frame(schema_id, body)) == request | {"tenant": None}


def test_another_record_is_not_too_new(store: SchemaStore, schemas: RegistrySchemas) -> None:
    schema_id = _register(schemas, json.loads(store.get("inference_result").text))
    with pytest.raises(DecodeError) as info:
        _codec(store, schemas).decode(_frame(schema_id, b"\x00"))
    assert info.value.code is ErrorCode.SCHEMA_RESOLUTION_FAILED


# ------------------------------------------------------------------ unknown ids


class CountingClient:
    """The mock registry client, counting ``get_schema`` calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lookups = 0

    def get_schema(self, schema_id: int) -> Any:
        self.lookups += 1
        return self.inner.get_schema(schema_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_unknown_id_costs_one_lookup_per_ttl(store: SchemaStore) -> None:
    now = [1000.0]
    mock = RegistrySchemas.from_url(f"mock://unknown-{uuid.uuid4().hex[:8]}").client
    client = CountingClient(mock)
    schemas = RegistrySchemas(client, clock=lambda: now[0])
    codec = _codec(store, schemas)
    unknown = 1  # the id the empty mock registry hands out first: registered below, after the TTL test
    record = _frame(unknown, _body(store))
    for _ in range(300):
        with pytest.raises(DecodeError) as info:
            codec.decode(record)
        assert info.value.code is ErrorCode.UNKNOWN_SCHEMA
    assert client.lookups == 1
    assert info.value.message == (
        "unknown writer schema: registry id 1 (header bytes 00 00 00 00 01) is not in the registry"
    )
    assert mock.register_schema("in-value", client_module().Schema(store.get(REQ).text, "AVRO")) == unknown
    now[0] += UNKNOWN_ID_TTL_S / 2
    with pytest.raises(DecodeError):
        codec.decode(record)
    assert client.lookups == 1  # still within the TTL
    now[0] += UNKNOWN_ID_TTL_S
    assert codec.decode(record)["payload"] == {"text": "hi"}
    assert client.lookups == 2


def test_unknown_ids_are_remembered_in_bounded_memory(store: SchemaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.serde.registry as registry

    monkeypatch.setattr(registry, "UNKNOWN_IDS_KEPT", 50)
    client = CountingClient(RegistrySchemas.from_url(f"mock://bounded-{uuid.uuid4().hex[:8]}").client)
    schemas = RegistrySchemas(client)
    codec = _codec(store, schemas)
    for schema_id in range(1000, 1200):
        with pytest.raises(DecodeError):
            codec.decode(_frame(schema_id, b"\x00"))
    assert len(schemas._unknown) == 50 and min(schemas._unknown) == 1150
