"""Registry mode against a real Confluent-compatible registry (Apicurio), interop with confluent-kafka.

Bytes we write are read by confluent-kafka's own ``AvroDeserializer``; bytes its ``AvroSerializer`` writes
are read by us; a v1 writer is read by a v2 reader through registry ids. Without Java >= 21 these run
against confluent-kafka's mock registry (see conftest) and ``test_real_registry_was_used`` says so.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import numpy as np
import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipeline.serde import DecodeError, ErrorCode, EventCodec, SchemaStore, build_request, build_result
from pipeline.serde.fingerprint import rabin_fingerprint
from pipeline.serde.registry import RegistrySchemas

from .conftest import RegistryTarget

REQ = "inference_request"


def test_real_registry_was_used(registry: RegistryTarget) -> None:
    if not registry.real:
        pytest.skip(f"registry tests ran against confluent-kafka's mock registry: {registry.why_not_real}")
    assert registry.url.endswith("/apis/ccompat/v7")


@pytest.fixture(scope="module")
def schemas(registry: RegistryTarget) -> RegistrySchemas:
    return RegistrySchemas.from_url(registry.url)


def _codec(store: SchemaStore, schemas: RegistrySchemas, topic: str, chain: str = REQ, **kw: Any) -> EventCodec:
    return EventCodec(store, chain, framing="confluent", registry=schemas, topic=topic, **kw)


def _normalise(datum: dict[str, Any]) -> dict[str, Any]:
    """confluent-kafka's deserializer applies logical types: back to our int millis and str UUIDs."""
    out = dict(datum)
    for key, value in out.items():
        if isinstance(value, dt.datetime):
            out[key] = int(value.timestamp() * 1000)
        elif isinstance(value, uuid.UUID):
            out[key] = str(value)
    return out


def test_our_bytes_read_by_confluent_deserializer(
    store: SchemaStore, schemas: RegistrySchemas, unique_topic: str
) -> None:
    codec = _codec(store, schemas, unique_topic)
    request = build_request(model="tiny", tensors={"x": np.arange(8, dtype=np.float32)}, correlation_id="c")
    data = codec.encode(request)
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    registered = schemas.client.get_schema(schema_id).schema_str
    assert rabin_fingerprint(json.loads(registered)) == store.get(REQ).fingerprint
    theirs = AvroDeserializer(schemas.client)(data, SerializationContext(unique_topic, MessageField.VALUE))
    assert _normalise(theirs) == {**request, "tenant": None}


def test_confluent_serializer_bytes_read_by_us(store: SchemaStore, schemas: RegistrySchemas, unique_topic: str) -> None:
    sv = store.get("inference_result")
    serializer = AvroSerializer(schemas.client, sv.text, conf={"auto.register.schemas": True})
    request = build_request(model="m", text="hello")
    result = build_result(
        request=request, model_name="m", model_version="1", provider="CPUExecutionProvider", embedding=[0.5] * 384
    )
    data = serializer(result, SerializationContext(unique_topic, MessageField.VALUE))
    assert data is not None and data[0] == 0
    ours = _codec(store, schemas, unique_topic, chain="inference_result")
    assert ours.decode(data) == result
    assert ours.encode(result) == data  # same registered schema, same id, same body


def test_v1_writer_v2_reader_through_registry_ids(
    store: SchemaStore, schemas: RegistrySchemas, unique_topic: str
) -> None:
    v1 = _codec(store, schemas, unique_topic, writer_version=1)
    v2 = _codec(store, schemas, unique_topic)
    request = build_request(model="m", text="evolve me")
    old = v1.encode(request)
    new = v2.encode({**request, "tenant": "acme"})
    assert old[1:5] != new[1:5]  # two versions of the subject, two ids
    assert v2.decode(old) == {**request, "tenant": None}
    assert _codec(store, schemas, unique_topic, reader_version=1).decode(new) == request


def test_unknown_schema_id(store: SchemaStore, schemas: RegistrySchemas, unique_topic: str) -> None:
    codec = _codec(store, schemas, unique_topic)
    body = codec.encode(build_request(model="m", text="x"))[5:]
    with pytest.raises(DecodeError) as info:
        codec.decode(b"\x00" + (987_654_321).to_bytes(4, "big") + body)
    assert info.value.code is ErrorCode.UNKNOWN_SCHEMA


def test_ids_are_cached_no_registry_call_per_message(
    store: SchemaStore, schemas: RegistrySchemas, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = _codec(store, schemas, unique_topic)
    data = codec.encode(build_request(model="m", text="warm"))
    codec.decode(data)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("registry called on the hot path")

    for name in ("register_schema", "get_schema", "lookup_schema"):
        monkeypatch.setattr(schemas.client, name, forbidden)
    for _ in range(3):
        assert codec.decode(codec.encode(build_request(model="m", text="hot")))["payload"] == {"text": "hot"}
