"""Typed failures of the serde: every one carries an :class:`ErrorCode` and the :class:`Stage` it belongs to.

A processor catches :class:`EventError` (or one subclass) and has everything an ``InferenceError`` and a
dead letter need; no fastavro, struct, EOF or Unicode exception ever leaves the codec.
"""

from __future__ import annotations

from pipeline.errors import ExternalCause
from pipeline.serde.codes import ErrorCode, Stage
from pipeline.serde.failure import Failure


class EventError(Exception):
    """One event that cannot go on; ``code`` and ``stage`` are the symbols of the error schema."""

    stage: Stage = Stage.UNKNOWN

    def __init__(self, code: ErrorCode, message: str, *, event_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.event_id = event_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}, {self.message!r})"

    def failure(self) -> Failure:
        """This event's failure as the value the stages route."""
        return Failure(self.stage, self.code, self.message, exception=self, event_id=self.event_id)

    def __reduce__(self) -> tuple[object, ...]:  # keep code and event_id through pickling (process pools)
        return (_rebuild, (type(self), self.code, self.message, self.event_id))


def _rebuild(cls: type[EventError], code: ErrorCode, message: str, event_id: str | None) -> EventError:
    return cls(code, message, event_id=event_id)


class DecodeError(EventError):
    """The bytes are not an event we can read: framing, schema lookup or the Avro body failed."""

    stage = Stage.DECODE


class ValidationError(EventError):
    """The event decodes but breaks a rule the schema cannot express (UUID form, tensor sizes, ...)."""

    stage = Stage.VALIDATE


class EncodeError(EventError):
    """A datum the writer schema does not accept; a programming or hook error on the output side."""

    stage = Stage.OUTPUT


class SchemaStoreError(Exception):
    """The ``schemas/`` folder is missing, malformed, or lacks a record type; a start-up problem."""


class RegistryUnavailable(ExternalCause):
    """The schema registry could not be asked (network, auth, 5xx): not the event's fault, retry the batch."""
