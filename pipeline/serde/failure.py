"""One event that failed, as a value: what its ``InferenceError`` and its dead letter are made from.

Every per-event failure, wherever it happens (decode, validation, a hook, the model, building or encoding
the result), is this one type with the error schema's own enums, so nothing converts it on the way from
where it happened to where it is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.serde.codes import ErrorCode, Stage


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one event could not be answered, in the terms of the ``InferenceError`` schema.

    ``exception`` is the exception that was raised, when one was (its class and stack trace go into the
    dead letter's headers); a failure reported as a value (a model outcome) has none.
    """

    stage: Stage
    code: ErrorCode
    message: str
    retryable: bool = False
    attempts: int = 1
    exception: BaseException | None = None
    event_id: str | None = None
    model: str | None = None
