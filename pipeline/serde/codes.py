"""The enums of the event schemas, as Python ``StrEnum`` s whose values are the Avro symbols.

Being ``str`` subclasses, members can be put into a datum as they are (fastavro writes an enum from its
symbol string), and compare equal to the plain strings a decoded datum holds. A test keeps these in step
with the ``.avsc`` files; a new symbol is added to a new schema version and here at the same time.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why an event failed (``InferenceError.error_code``). ``UNKNOWN`` is the schema's enum default."""

    UNKNOWN = "UNKNOWN"
    # decode: the bytes could not become a datum
    EMPTY = "EMPTY"
    BAD_MAGIC = "BAD_MAGIC"
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"  # fingerprint or registry id not known
    TRUNCATED = "TRUNCATED"
    SCHEMA_RESOLUTION_FAILED = "SCHEMA_RESOLUTION_FAILED"
    INVALID_DATUM = "INVALID_DATUM"
    TOO_LARGE = "TOO_LARGE"
    # validate: a datum that decodes but cannot be served
    INVALID_UUID = "INVALID_UUID"
    EMPTY_TEXT = "EMPTY_TEXT"
    BAD_SHAPE = "BAD_SHAPE"
    BAD_DTYPE = "BAD_DTYPE"
    TENSOR_SIZE_MISMATCH = "TENSOR_SIZE_MISMATCH"
    NAN_TENSOR = "NAN_TENSOR"
    UNKNOWN_MODEL = "UNKNOWN_MODEL"
    # inference, hooks, output
    INFERENCE_FAILED = "INFERENCE_FAILED"
    TIMEOUT = "TIMEOUT"
    HOOK_FAILED = "HOOK_FAILED"
    OUTPUT_FAILED = "OUTPUT_FAILED"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    # added in inference_error v2: hostile input, each past a limit of its own (pipeline/serde/limits.py)
    TENSOR_TOO_LARGE = "TENSOR_TOO_LARGE"  # validate: a shape past max_tensor_elements, or absurd
    TEXT_TOO_LONG = "TEXT_TOO_LONG"  # validate: a string field past max_text_chars
    TOO_MANY_ITEMS = "TOO_MANY_ITEMS"  # validate: an array or map past max_items
    SCHEMA_TOO_NEW = "SCHEMA_TOO_NEW"  # decode: a later version of our record that our reader cannot resolve


class Stage(StrEnum):
    """The pipeline step that failed (``InferenceError.stage``). ``UNKNOWN`` is the enum default."""

    UNKNOWN = "UNKNOWN"
    DECODE = "DECODE"
    VALIDATE = "VALIDATE"
    INFERENCE = "INFERENCE"
    OUTPUT = "OUTPUT"
    HOOK = "HOOK"


class Priority(StrEnum):
    """``InferenceRequest.priority``; ``HIGH`` takes the priority lane. ``NORMAL`` is the enum default."""

    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
