"""The model runtime: registry, provider choice, tokenisation, runners and per-event outcomes.

What processors use::

    from pipeline.model import ModelService, ModelInput, Success, Failure

    service = ModelService.from_settings(settings)          # loads and warms the default model
    outcomes = await service.run_batch_async([(model_name_or_None, ModelInput(text="...")), ...])

torch and friends are never imported from here: the export lives in ``pipeline.model.export``. Each name
is imported from its module when first used, so that a process that needs only the errors or the registry
(the supervisor, the input role) never loads ONNX Runtime.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "ExportError": "errors",
    "Failure": "outcome",
    "InputError": "errors",
    "ModelError": "errors",
    "ModelInfo": "outcome",
    "ModelInput": "inputs",
    "ModelNotExported": "errors",
    "ModelRunner": "runner",
    "ModelService": "service",
    "ModelSpec": "registry",
    "Outcome": "outcome",
    "ProviderUnavailable": "errors",
    "Registry": "registry",
    "RegistryError": "errors",
    "Success": "outcome",
    "UnknownModel": "errors",
    "decode_tensor": "inputs",
    "encode_tensor": "inputs",
    "load_registry": "registry",
}

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


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
