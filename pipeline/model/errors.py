"""Error codes and exceptions of the model runtime.

Per-event problems become a :class:`~pipeline.serde.failure.Failure` carrying the error schema's
:class:`~pipeline.serde.codes.ErrorCode`; the exceptions here are for start-up problems (a device or a
model that cannot be had), which must stop a worker with one clear line instead of turning every event
into an error.
"""

from __future__ import annotations

from pipeline.errors import ExternalCause
from pipeline.serde.codes import ErrorCode


class ModelError(Exception):
    """A model-runtime problem whose message is meant for a person (the CLI prints it as one line)."""


class UnknownModel(ModelError):
    """The registry has no model of that name."""


class ModelNotExported(ModelError):
    """The registry knows the model but the model cache lacks its files."""


class ProviderUnavailable(ModelError):
    """``device = "cuda"`` was asked for and CUDA cannot be used here."""


class RegistryError(ModelError):
    """``models.toml`` cannot be read or does not validate."""


class ExportError(ModelError):
    """The export could not run, or its result failed its own check (nothing was written)."""


class InputError(ValueError):
    """One event's input cannot be given to the model; carries the code its failure reports."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ModelUnavailable(ExternalCause):
    """A model batch failed as a whole and the model does not answer a known-good probe either: the model
    (or its device) is at fault, not the events, which wait in Kafka until it answers again."""
