"""The .avsc files against the Python side: enum symbols, defaults, docs, fingerprints, evolution."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import avro.schema
import pytest

from pipeline.serde.codes import ErrorCode, Priority, Stage
from pipeline.serde.fingerprint import fingerprint_int, rabin_fingerprint
from pipeline.serde.store import SchemaStore, strip_logical_types

from .conftest import SCHEMAS


def _find_enum(schema: Any, name: str) -> dict[str, Any]:
    if isinstance(schema, dict):
        if schema.get("type") == "enum" and schema.get("name") == name:
            return schema
        for value in schema.values():
            if isinstance(value, dict | list):
                try:
                    return _find_enum(value, name)
                except LookupError:
                    pass
    elif isinstance(schema, list):
        for value in schema:
            try:
                return _find_enum(value, name)
            except LookupError:
                pass
    raise LookupError(name)


@pytest.mark.parametrize(
    ("chain", "enum_name", "py_enum", "default"),
    [
        ("inference_error", "ErrorCode", ErrorCode, "UNKNOWN"),
        ("inference_error", "Stage", Stage, "UNKNOWN"),
        ("inference_request", "Priority", Priority, "NORMAL"),
    ],
)
def test_python_enums_match_every_schema_version(
    store: SchemaStore, chain: str, enum_name: str, py_enum: type[StrEnum], default: str
) -> None:
    """The newest version has exactly the Python enum's symbols; an older one a leading part of them (a
    version only appends symbols), and every one keeps the default an older reader maps new symbols to."""
    symbols = [m.value for m in py_enum]
    versions = store.chains[chain]
    assert _find_enum(versions[-1].schema, enum_name)["symbols"] == symbols, versions[-1].label
    for sv in versions:
        enum = _find_enum(sv.schema, enum_name)
        assert enum["symbols"] == symbols[: len(enum["symbols"])], sv.label
        assert enum["default"] == default, sv.label


def test_error_v2_appends_the_hostile_input_codes_to_v1(store: SchemaStore) -> None:
    v1, v2 = store.get("inference_error", 1), store.get("inference_error", 2)
    assert store.get("inference_error") is v2  # the error codec writes the newest version
    old, new = _find_enum(v1.schema, "ErrorCode")["symbols"], _find_enum(v2.schema, "ErrorCode")["symbols"]
    assert new[: len(old)] == old
    assert new[len(old) :] == ["TENSOR_TOO_LARGE", "TEXT_TOO_LONG", "TOO_MANY_ITEMS", "SCHEMA_TOO_NEW"]
    # everything but the error codes is v1's, so the two differ only there
    strip = {"ErrorCode"}
    assert _without_enums(v1.schema, strip) == _without_enums(v2.schema, strip) | {"doc": v1.schema["doc"]}


def _without_enums(schema: Any, names: set[str]) -> Any:
    if isinstance(schema, dict):
        if schema.get("type") == "enum" and schema.get("name") in names:
            return "enum"
        return {k: _without_enums(v, names) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_without_enums(v, names) for v in schema]
    return schema


def test_a_v1_reader_reads_new_error_codes_as_unknown(store: SchemaStore) -> None:
    from pipeline.serde import EventCodec, build_error

    written = EventCodec(store, "inference_error").encode(
        build_error(
            stage="VALIDATE",
            error_code=ErrorCode.TENSOR_TOO_LARGE,
            message="m",
            source_topic="t",
            source_partition=0,
            source_offset=1,
        )
    )
    assert EventCodec(store, "inference_error", reader_version=1).decode(written)["error_code"] == "UNKNOWN"
    assert EventCodec(store, "inference_error").decode(written)["error_code"] == "TENSOR_TOO_LARGE"


def test_error_codes_cover_what_the_issues_name() -> None:
    named = {
        "EMPTY", "BAD_MAGIC", "UNKNOWN_SCHEMA", "TRUNCATED", "SCHEMA_RESOLUTION_FAILED", "INVALID_DATUM",
        "TOO_LARGE", "INVALID_UUID", "EMPTY_TEXT", "BAD_SHAPE", "BAD_DTYPE", "TENSOR_SIZE_MISMATCH",
        "NAN_TENSOR", "UNKNOWN_MODEL", "INFERENCE_FAILED", "TIMEOUT", "HOOK_FAILED", "OUTPUT_FAILED",
        "RETRIES_EXHAUSTED", "UNKNOWN",
    }  # fmt: skip
    assert named <= {c.value for c in ErrorCode}
    assert {"DECODE", "VALIDATE", "INFERENCE", "OUTPUT", "HOOK", "UNKNOWN"} == {s.value for s in Stage}


def test_model_runtime_error_codes_exist_in_the_schema() -> None:
    """The model runtime has its own ErrorCode enum; every value it can emit must be a schema symbol."""
    model_errors = pytest.importorskip("pipeline.model.errors")
    assert {c.value for c in model_errors.ErrorCode} <= {c.value for c in ErrorCode}


@pytest.mark.parametrize("schema", ['"null"', '"int"', '{"type": "array", "items": "string"}'])
def test_fingerprint_matches_avro_library(schema: str) -> None:
    ours = rabin_fingerprint(json.loads(schema))
    assert ours == avro.schema.parse(schema).fingerprint("CRC-64-AVRO")


def test_fingerprint_is_little_endian_as_the_spec_test_vectors() -> None:
    # Avro's share/test/data/schema-tests.txt: the 64-bit fingerprints of "null" and "int" as Java longs
    assert fingerprint_int(rabin_fingerprint("null")) == 7195948357588979594
    assert fingerprint_int(rabin_fingerprint("int")) == 8247732601305521295
    assert rabin_fingerprint("int") == (8247732601305521295).to_bytes(8, "little")


def test_fingerprints_of_the_event_schemas_match_avro_library(store: SchemaStore) -> None:
    """Our header fingerprint equals the ``avro`` library's for every event schema's parsing form.

    ``avro`` 1.12's ``canonical_form`` keeps a logical-type primitive as ``{"type":"long"}``, against the
    spec's [PRIMITIVES] and [STRIP] rules (Java and fastavro write ``"long"``, as logical types are not
    relevant to parsing). So we compare on the schema without its logical-type annotations, where the
    spec says the fingerprint is the same, and check that this is the only difference.
    """
    for sv in store:
        stripped = json.dumps(strip_logical_types(sv.schema))
        assert sv.fingerprint == avro.schema.parse(stripped).fingerprint("CRC-64-AVRO"), sv.label
        assert sv.canonical == avro.schema.parse(stripped).canonical_form, sv.label
        avro_full = avro.schema.parse(sv.text).canonical_form
        for primitive in ("string", "long", "int"):
            avro_full = avro_full.replace(f'{{"type":"{primitive}"}}', f'"{primitive}"')
        assert avro_full == sv.canonical, sv.label
        assert store.by_fingerprint(sv.fingerprint) is sv


def test_v2_adds_a_defaulted_field_and_changes_the_fingerprint(store: SchemaStore) -> None:
    v1, v2 = store.get("inference_request", 1), store.get("inference_request", 2)
    assert store.get("inference_request") is v2
    new = {f["name"] for f in v2.schema["fields"]} - {f["name"] for f in v1.schema["fields"]}
    assert new
    for fld in v2.schema["fields"]:
        if fld["name"] in new:
            assert "default" in fld
    assert v1.fingerprint != v2.fingerprint


def test_tensors_have_no_batch_axis_in_the_example_of_the_tiny_model() -> None:
    example = json.loads((SCHEMAS / "inference_request" / "examples" / "v1-tensors.json").read_text())
    tensor = example["payload"]["pipeline.events.TensorPayload"]["tensors"][0]
    assert (tensor["name"], tensor["dtype"], tensor["shape"]) == ("x", "float32", [8])


def test_store_rejects_gaps_and_bad_json(tmp_path: Any) -> None:
    from pipeline.serde.errors import SchemaStoreError

    chain = tmp_path / "thing"
    chain.mkdir()
    (chain / "v1.avsc").write_text('{"type": "record", "name": "T", "fields": []}')
    (chain / "v3.avsc").write_text('{"type": "record", "name": "T", "fields": []}')
    with pytest.raises(SchemaStoreError, match="without gaps"):
        SchemaStore.load(tmp_path)
    (chain / "v3.avsc").unlink()
    (chain / "v2.avsc").write_text("{not json")
    with pytest.raises(SchemaStoreError, match=r"v2\.avsc"):
        SchemaStore.load(tmp_path)
