"""Events on the wire: Avro schemas, the codec, typed errors, validation and tensor helpers.

What the processors call::

    codecs = Codecs.from_settings(settings)          # or EventCodec.from_settings(settings, "request")
    request = codecs.request.decode(msg.value())     # DecodeError | ValidationError (both EventError);
                                                     # exc.failure() is the event's Failure
    value = codecs.result.encode(build_result(...))  # EncodeError
    value = codecs.error.encode(build_error(...))
"""

from pipeline.serde.builders import (
    build_error,
    build_request,
    build_result,
    classification_output,
    embedding_output,
    now_millis,
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
from pipeline.serde.tensors import array_to_tensor, payload_arrays, tensor_payload, tensor_to_array, text_payload
from pipeline.serde.validation import WIRE_DTYPES, check_tensor, has_nan, is_uuid, validate_request

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
