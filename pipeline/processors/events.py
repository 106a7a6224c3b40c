"""The processors' view of the serde: decode a request or say why not, encode results and errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.serde import Codecs, EventError


class Rejected(Exception):
    """A record that cannot become a request; carries what its error event and dead letter need."""

    def __init__(self, error: EventError) -> None:
        super().__init__(str(error))
        self.error = error

    def as_failed(self) -> Any:
        from pipeline.processors.routing import Failed

        return Failed(
            str(self.error.stage),
            str(self.error.code),
            self.error.message,
            exception=self.error,
            event_id=self.error.event_id,
        )


@dataclass
class EventCodecs:
    codecs: Codecs

    @classmethod
    def from_settings(cls, settings: Settings, *, validate: bool = True) -> EventCodecs:
        """``validate=False`` for the inference agent: its records were validated by the input agent, and
        the model runtime checks tensors and texts again per event before batching."""
        return cls(Codecs.from_settings(settings, validate=validate))

    def decode_request(self, value: bytes | None) -> dict[str, Any]:
        try:
            return self.codecs.request.decode(value)
        except EventError as exc:
            raise Rejected(exc) from exc

    def encode_result(self, datum: dict[str, Any]) -> bytes:
        return self.codecs.result.encode(datum)

    def encode_error(self, datum: dict[str, Any]) -> bytes:
        return self.codecs.error.encode(datum)
