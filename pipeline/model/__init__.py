"""The model runtime: registry, provider choice, tokenisation, runners and per-event outcomes.

What processors use::

    from pipeline.model import ModelService, ModelInput, Success, Failure

    service = ModelService.from_settings(settings)          # loads and warms the default model
    outcomes = await service.run_batch_async([(model_name_or_None, ModelInput(text="...")), ...])

torch and friends are never imported from here: the export lives in ``pipeline.model.export``.
"""

from pipeline.model.errors import (
    ExportError,
    InputError,
    ModelError,
    ModelNotExported,
    ProviderUnavailable,
    RegistryError,
    UnknownModel,
)
from pipeline.model.inputs import ModelInput, decode_tensor, encode_tensor
from pipeline.model.outcome import Failure, ModelInfo, Outcome, Success
from pipeline.model.registry import ModelSpec, Registry, load_registry
from pipeline.model.runner import ModelRunner
from pipeline.model.service import ModelService

__all__ = [
    "ExportError",
    "Failure",
    "InputError",
    "ModelError",
    "ModelInfo",
    "ModelInput",
    "ModelNotExported",
    "ModelRunner",
    "ModelService",
    "ModelSpec",
    "Outcome",
    "ProviderUnavailable",
    "Registry",
    "RegistryError",
    "Success",
    "UnknownModel",
    "decode_tensor",
    "encode_tensor",
    "load_registry",
]
