"""`pipeline model export|path|info|bench|list`: the model cache and the model's own ceiling."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from pipeline.cli.common import CommandError, console, err_console, handle_errors, settings_from
from pipeline.model.errors import ModelError

if TYPE_CHECKING:  # the runtime (onnxruntime) loads only for the commands that need it
    from pipeline.model.runner import ModelRunner

app = typer.Typer(help="Export, inspect and benchmark the models in models.toml.", no_args_is_help=True)

MODEL_OPT = typer.Option(None, "--model", "-m", help="Model name in models.toml (config: model).")
DEVICE_OPT = typer.Option(None, "--device", help="auto, cpu or cuda (config: device).")


@app.command("export")
@handle_errors
def export(
    ctx: typer.Context,
    model: str | None = MODEL_OPT,
    force: bool = typer.Option(False, "--force", help="Rebuild even when the cache has the model."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write the fp16 variant (used on CUDA)."),
    verify: bool = typer.Option(False, "--verify", help="Check the cached export against sentence-transformers again."),
) -> None:
    """Build the model's ONNX file into the model cache (once) and check it; prints its path last."""
    from pipeline.model.export import export_model, verify_export
    from pipeline.model.registry import load_registry

    settings = settings_from(ctx, model=model)
    try:
        spec = load_registry(settings.models_file).get(settings.model)
        path = export_model(
            spec, settings.model_cache, force=force, fp16=fp16, progress=lambda m: err_console().print(m)
        )
        if verify and spec.builder == "minilm":
            err_console().print(f"verified: min cosine {verify_export(spec, settings.model_cache):.7f}")
    except ModelError as exc:
        raise CommandError(str(exc)) from None
    print(path)


@app.command("path")
@handle_errors
def path(ctx: typer.Context, model: str | None = MODEL_OPT) -> None:
    """Print the model's ONNX file in the cache; exit 1 when it is not there (scripts export then)."""
    from pipeline.model.registry import load_registry

    settings = settings_from(ctx, model=model)
    try:
        spec = load_registry(settings.models_file).get(settings.model)
    except ModelError as exc:
        raise CommandError(str(exc)) from None
    file = spec.path(settings.model_cache)
    if not file.is_file() and spec.builder != "tiny":
        raise CommandError(f"{file} missing: run `pipeline model export --model {spec.name}`")
    print(file)


@app.command("list")
@handle_errors
def list_models(ctx: typer.Context) -> None:
    """The models of models.toml and whether the cache has them."""
    from pipeline.model.registry import load_registry

    settings = settings_from(ctx)
    try:
        registry = load_registry(settings.models_file)
    except ModelError as exc:
        raise CommandError(str(exc)) from None
    table = Table(title=f"{settings.models_file} (cache {settings.model_cache})")
    for col in ("model", "version", "task", "max batch", "cached"):
        table.add_column(col)
    for spec in registry:
        cached = spec.path(settings.model_cache).is_file()
        state = "[green]yes[/]" if cached else "[dim]generated on use[/]" if spec.builder == "tiny" else "[red]no[/]"
        table.add_row(spec.name, spec.version, spec.task, str(spec.max_batch_size), state)
    console().print(table)


@app.command("info")
@handle_errors
def info(ctx: typer.Context, model: str | None = MODEL_OPT, device: str | None = DEVICE_OPT) -> None:
    """Load the model as a worker would: provider in use, inputs and outputs, path."""
    runner = _load(ctx, model, device)
    d = runner.describe()
    table = Table(title=f"{d['name']} v{d['version']}", show_header=False)
    for key in ("task", "provider", "path", "intra_op_threads", "max_batch_size"):
        table.add_row(key, str(d[key]))
    for name, (kind, shape) in d["inputs"].items():
        table.add_row(f"input {name}", f"{kind} {shape}")
    for name, (kind, shape) in d["outputs"].items():
        table.add_row(f"output {name}", f"{kind} {shape}")
    console().print(table)


@app.command("bench")
@handle_errors
def bench(
    ctx: typer.Context,
    model: str | None = MODEL_OPT,
    batch: str = typer.Option("1,8,32,64", "--batch", "-b", help="Comma-separated batch sizes."),
    seconds: float = typer.Option(2.0, "--seconds", min=0.1, help="Minimum time per batch size."),
    device: str | None = DEVICE_OPT,
) -> None:
    """Events/s per batch size through the runner's full per-event path (the pipeline's ceiling)."""
    from pipeline.model.bench import bench as run_bench

    try:
        sizes = [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise CommandError(f"--batch wants comma-separated integers, got {batch!r}") from None
    if not sizes or min(sizes) < 1:
        raise CommandError("--batch needs positive sizes")
    started = time.monotonic()
    runner = _load(ctx, model, device)
    err_console().print(f"loaded and warmed up in {time.monotonic() - started:.1f} s")
    rows = run_bench(runner, sizes, min_seconds=seconds)
    runner.close()
    table = Table(title=f"{runner.spec.name} on {runner.provider} ({runner.intra_op_threads} intra-op threads)")
    for col in ("batch", "events", "seconds", "events/s", "ms/batch"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            str(row.batch),
            str(row.events),
            f"{row.seconds:.2f}",
            f"{row.events_per_s:,.0f}",
            f"{row.ms_per_batch:.2f}",
        )
    console().print(table)


def _load(ctx: typer.Context, model: str | None, device: str | None) -> ModelRunner:
    from pipeline.model.registry import load_registry
    from pipeline.model.runner import ModelRunner

    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise CommandError(f"--device must be auto, cpu or cuda, not {device!r}")
    settings = settings_from(ctx, model=model, device=device)
    try:
        spec = load_registry(settings.models_file).get(settings.model)
        return ModelRunner(
            spec, settings.model_cache, device=settings.device, intra_op_threads=settings.intra_op_threads
        )
    except ModelError as exc:
        raise CommandError(str(exc)) from None
