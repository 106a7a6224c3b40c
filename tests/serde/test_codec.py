"""EventCodec: round trips, single-object framing per the spec, evolution, and every decode error code."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastavro import schemaless_reader, schemaless_writer

from pipeline.config import Settings
from pipeline.serde import (
    Codecs,
    DecodeError,
    EncodeError,
    ErrorCode,
    EventCodec,
    EventError,
    Stage,
    ValidationError,
    build_error,
    build_request,
    build_result,
    classification_output,
    payload_arrays,
)
from pipeline.serde.builders import float_list
from pipeline.serde.store import SchemaStore

from .conftest import SCHEMAS

REQ = "inference_request"


def _text_request(**kw: Any) -> dict[str, Any]:
    return build_request(model="minilm-l6", text="a sentence to embed " * 10, attributes={"k": "v"}, **kw)


@pytest.fixture
def codecs() -> Codecs:
    return Codecs.from_settings(Settings(schemas_dir=SCHEMAS))


def test_single_object_header_is_the_spec_layout(codecs: Codecs, store: SchemaStore) -> None:
    data = codecs.request.encode(_text_request())
    writer = store.get(REQ)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == writer.fingerprint
    # the body is exactly what fastavro's public schemaless_writer gives for the same schema
    assert schemaless_reader(io.BytesIO(data[10:]), writer.parsed, None)["source"] == "pipeline"


def test_text_request_round_trip_fills_v2_default(codecs: Codecs) -> None:
    request = _text_request(correlation_id="c-1", priority="HIGH")
    decoded = codecs.request.decode(codecs.request.encode(request))
    assert decoded == {**request, "tenant": None}
    assert isinstance(decoded["created_at"], int)
    assert isinstance(decoded["event_id"], str)


def test_tensor_request_round_trip_and_arrays(codecs: Codecs) -> None:
    x = np.linspace(-1, 1, 8, dtype=np.float32)
    request = build_request(model="tiny", tensors={"x": x})
    decoded = codecs.request.decode(codecs.request.encode(request))
    arrays = payload_arrays(decoded["payload"])
    assert list(arrays) == ["x"]
    assert arrays["x"].shape == (8,)
    assert arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(arrays["x"], x)


@pytest.mark.parametrize("kind", ["embedding", "tensors", "classification"])
def test_result_round_trip(codecs: Codecs, kind: str) -> None:
    request = _text_request()
    common: dict[str, Any] = {
        "request": request,
        "model_name": "m",
        "model_version": "3",
        "provider": "CPUExecutionProvider",
        "batch_size": 32,
        "worker_id": "w-1",
    }
    if kind == "embedding":
        vector = np.random.default_rng(1).standard_normal(384)
        result = build_result(embedding=vector, **common)
        assert result["output"]["embedding"] == float_list(vector)
    elif kind == "tensors":
        result = build_result(tensors={"y": np.arange(4, dtype=np.int64)}, **common)
    else:
        result = build_result(output=classification_output("positive", 0.75), **common)
    decoded = codecs.result.decode(codecs.result.encode(result))
    assert decoded == result
    assert decoded["model"]["provider"] == "CPUExecutionProvider"


def test_error_round_trip_with_enum_members(codecs: Codecs) -> None:
    error = build_error(
        stage=Stage.VALIDATE,
        error_code=ErrorCode.TENSOR_SIZE_MISMATCH,
        message="x" * 10_000,
        source_topic="pipeline.input",
        source_partition=3,
        source_offset=2**40,
        event_id="not-a-uuid",
    )
    decoded = codecs.error.decode(codecs.error.encode(error))
    assert decoded == error
    assert decoded["error_code"] == ErrorCode.TENSOR_SIZE_MISMATCH
    assert len(decoded["message"]) < 10_000


def test_v1_writer_decodes_with_v2_reader_and_back(store: SchemaStore) -> None:
    v1_writer = EventCodec(store, REQ, writer_version=1)
    v2_reader = EventCodec(store, REQ)
    request = _text_request()
    data = v1_writer.encode(request)
    assert data[2:10] == store.get(REQ, 1).fingerprint
    assert v2_reader.decode(data) == {**request, "tenant": None}
    # forward: a v1 reader skips what v2 added
    v2_data = EventCodec(store, REQ, writer_version=2).encode({**request, "tenant": "acme"})
    assert EventCodec(store, REQ, reader_version=1).decode(v2_data) == request


def test_fast_path_and_public_api_agree(store: SchemaStore) -> None:
    fast = EventCodec(store, REQ)
    public = EventCodec(store, REQ, fast_path=False)
    v1 = EventCodec(store, REQ, writer_version=1, fast_path=False)
    request = build_request(model="tiny", tensors={"x": np.ones((2, 3), dtype=np.float16)})
    assert fast.encode(request) == public.encode(request)
    body = io.BytesIO()
    schemaless_writer(
        body, store.get(REQ).schema, {**request, "payload": ("pipeline.events.TensorPayload", request["payload"])}
    )
    assert fast.encode(request)[10:] == body.getvalue()
    old = v1.encode(request)
    assert fast.decode(old) == public.decode(old)


def test_encode_many_and_decode_many(codecs: Codecs) -> None:
    requests = [_text_request() for _ in range(5)]
    values = codecs.request.encode_many(requests)
    assert values == [codecs.request.encode(r) for r in requests]
    outcomes = codecs.request.decode_many([*values, b"", b"\x01junk"])
    assert outcomes[:5] == [{**r, "tenant": None} for r in requests]
    assert isinstance(outcomes[5], DecodeError) and outcomes[5].code is ErrorCode.EMPTY
    assert isinstance(outcomes[6], DecodeError) and outcomes[6].code is ErrorCode.BAD_MAGIC


def _code(codec: EventCodec, data: bytes | None) -> ErrorCode:
    with pytest.raises(EventError) as info:
        codec.decode(data)
    return info.value.code


def test_decode_error_codes(codecs: Codecs, store: SchemaStore) -> None:
    codec = codecs.request
    good = codec.encode(_text_request())
    assert _code(codec, b"") is ErrorCode.EMPTY
    assert _code(codec, None) is ErrorCode.EMPTY
    assert _code(codec, b'{"json": true}') is ErrorCode.BAD_MAGIC
    assert _code(codec, b"\xc3\x02" + good[2:]) is ErrorCode.BAD_MAGIC
    assert _code(codec, good[:6]) is ErrorCode.TRUNCATED
    assert _code(codec, good[:10]) is ErrorCode.TRUNCATED
    assert _code(codec, good[:-5]) is ErrorCode.TRUNCATED
    assert _code(codec, good[:2] + b"\x00" * 8 + good[10:]) is ErrorCode.UNKNOWN_SCHEMA
    assert _code(codec, good + b"\x00") is ErrorCode.INVALID_DATUM
    # a result's bytes fed to the request decoder: known fingerprint, but it does not resolve
    result = codecs.result.encode(
        build_result(request=_text_request(), model_name="m", model_version="1", provider="p", embedding=[1.0])
    )
    assert _code(codec, result) is ErrorCode.SCHEMA_RESOLUTION_FAILED
    # a confluent frame without a registry
    assert _code(codec, b"\x00\x00\x00\x00\x07" + good[10:]) is ErrorCode.UNKNOWN_SCHEMA
    assert _code(codec, b"\x00\x00\x00") is ErrorCode.TRUNCATED
    small = EventCodec(store, REQ, max_message_bytes=64)
    assert _code(small, good) is ErrorCode.TOO_LARGE


def test_invalid_utf8_and_bad_enum_index_are_invalid_datum(codecs: Codecs, store: SchemaStore) -> None:
    good = codecs.request.encode(build_request(model="m", text="abc", source="src"))
    event_id = good.index(b"\x48", 10) + 1  # 0x48: zigzag length 36 of the event id
    assert _code(codecs.request, good[:event_id] + b"\xff" + good[event_id + 1 :]) is ErrorCode.INVALID_DATUM
    error = build_error(stage="HOOK", error_code="HOOK_FAILED", message="m", source_topic="t", source_partition=0,
                        source_offset=0)  # fmt: skip
    data = bytearray(codecs.error.encode(error))
    data[11] = 0x7E  # the stage enum index (after the null event_id): 63, out of range
    assert _code(codecs.error, bytes(data)) is ErrorCode.INVALID_DATUM


def test_decode_validates_requests(codecs: Codecs, store: SchemaStore) -> None:
    raw = EventCodec(store, REQ, validator=None)
    bad = raw.encode({**_text_request(), "event_id": "nope"})
    with pytest.raises(ValidationError) as info:
        codecs.request.decode(bad)
    assert info.value.code is ErrorCode.INVALID_UUID
    assert info.value.stage is Stage.VALIDATE
    assert info.value.event_id == "nope"
    assert raw.decode(bad)["event_id"] == "nope"  # without a validator: only Avro
    blank = raw.encode(build_request(model="m", text="   "))
    assert _code(codecs.request, blank) is ErrorCode.EMPTY_TEXT


def test_encode_errors_name_the_field(codecs: Codecs) -> None:
    request = _text_request()
    with pytest.raises(EncodeError) as info:
        codecs.request.encode({**request, "created_at": "yesterday"})
    assert info.value.code is ErrorCode.INVALID_DATUM
    assert info.value.stage is Stage.OUTPUT
    assert "created_at" in str(info.value)
    with pytest.raises(EncodeError):
        codecs.request.encode({**request, "priority": "URGENT"})
    with pytest.raises(EncodeError, match="source"):
        codecs.request.encode({k: v for k, v in request.items() if k != "source"})


def test_encode_refuses_oversized_events(store: SchemaStore) -> None:
    codec = EventCodec(store, REQ, max_message_bytes=200)
    with pytest.raises(EncodeError) as info:
        codec.encode(build_request(model="m", text="x" * 500))
    assert info.value.code is ErrorCode.TOO_LARGE


def test_errors_survive_pickling() -> None:
    import pickle

    err = DecodeError(ErrorCode.TRUNCATED, "short", event_id="e")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.code, back.message, back.event_id) == (DecodeError, ErrorCode.TRUNCATED, "short", "e")


def test_registry_url_selects_confluent_framing_unless_framing_is_explicit() -> None:
    implicit = EventCodec.from_settings(Settings(schemas_dir=SCHEMAS, schema_registry_url="mock://implicit"), "error")
    assert implicit.framing == "confluent"
    explicit = EventCodec.from_settings(
        Settings(schemas_dir=SCHEMAS, schema_registry_url="mock://explicit", framing="single-object"), "error"
    )
    assert explicit.framing == "single-object"
    from pipeline.serde.errors import SchemaStoreError

    with pytest.raises(SchemaStoreError, match="registry"):
        EventCodec.from_settings(Settings(schemas_dir=SCHEMAS, framing="confluent"), "error")
