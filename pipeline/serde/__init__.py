"""Events on the wire: Avro schemas, the codec, typed errors, validation and tensor helpers.

What the processors call::

    codecs = Codecs.from_settings(settings)          # or EventCodec.from_settings(settings, "request")
    request = codecs.request.decode(msg.value())     # DecodeError | ValidationError (both EventError);
                                                     # exc.failure() is the event's Failure
    value = codecs.result.encode(build_result(...))  # EncodeError
    value = codecs.error.encode(build_error(...))

Each name is imported from its module when first used: a process that needs only the codes and errors
(the supervisor) loads neither numpy nor fastavro.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.serde.builders import (
        build_error,
        build_request,
        build_result,
        classification_output,
        embedding_output,
        now_millis,
        text_payload,
    )
    from pipeline.serde.codec import CHAINS, Codecs, EventCodec, RecordType
    from pipeline.serde.codes import ErrorCode, Priority, Stage
    from pipeline.serde.errors import (
        DecodeError,
        EncodeError,
        EventError,
        RegistryUnavailable,
        SchemaStoreError,
        ValidationError,
    )
    from pipeline.serde.failure import Failure
    from pipeline.serde.store import SchemaStore, SchemaVersion, shared_store
    from pipeline.serde.tensors import array_to_tensor, payload_arrays, tensor_payload, tensor_to_array
    from pipeline.serde.validation import WIRE_DTYPES, check_tensor, has_nan, is_uuid, validate_request

_MODULES = {
    "CHAINS": "codec",
    "Codecs": "codec",
    "DecodeError": "errors",
    "EncodeError": "errors",
    "ErrorCode": "codes",
    "EventCodec": "codec",
    "EventError": "errors",
    "Failure": "failure",
    "Priority": "codes",
    "RecordType": "codec",
    "RegistryUnavailable": "errors",
    "SchemaStore": "store",
    "SchemaStoreError": "errors",
    "SchemaVersion": "store",
    "Stage": "codes",
    "ValidationError": "errors",
    "WIRE_DTYPES": "validation",
    "array_to_tensor": "tensors",
    "build_error": "builders",
    "build_request": "builders",
    "build_result": "builders",
    "check_tensor": "validation",
    "classification_output": "builders",
    "embedding_output": "builders",
    "has_nan": "validation",
    "is_uuid": "validation",
    "now_millis": "builders",
    "payload_arrays": "tensors",
    "shared_store": "store",
    "tensor_payload": "tensors",
    "tensor_to_array": "tensors",
    "text_payload": "builders",
    "validate_request": "validation",
}

__all__ = [
    "CHAINS",
    "WIRE_DTYPES",
    "Codecs",
    "DecodeError",
    "EncodeError",
    "ErrorCode",
    "EventCodec",
    "EventError",
    "Failure",
    "Priority",
    "RecordType",
    "RegistryUnavailable",
    "SchemaStore",
    "SchemaStoreError",
    "SchemaVersion",
    "Stage",
    "ValidationError",
    "array_to_tensor",
    "build_error",
    "build_request",
    "build_result",
    "check_tensor",
    "classification_output",
    "embedding_output",
    "has_nan",
    "is_uuid",
    "now_millis",
    "payload_arrays",
    "shared_store",
    "tensor_payload",
    "tensor_to_array",
    "text_payload",
    "validate_request",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
