"""The ``pipeline`` command: one typer app, one sub-app per concern, each in its own module."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from pipeline.cli import dlq, model, offsets, produce, replay, schemas, tail, topics, worker
from pipeline.observability.logs import configure_logging

app = typer.Typer(
    name="pipeline",
    help="Event-driven ML inference on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", envvar="PIPELINE_CONFIG", help="TOML settings file.", show_envvar=True
    ),
) -> None:
    """Settings come from PIPELINE_* variables, KAFKA_BOOTSTRAP and an optional TOML file."""
    ctx.obj = {"config": config}
    configure_logging(os.environ.get("PIPELINE_LOG_LEVEL", "warning"))


app.add_typer(topics.app, name="topics")
app.add_typer(schemas.app, name="schemas")
app.add_typer(model.app, name="model")
app.command("worker")(worker.worker)
app.command("leave")(worker.leave)
app.add_typer(dlq.app, name="dlq")
app.add_typer(offsets.app, name="offsets")
app.command("tail")(tail.tail)
app.command("produce")(produce.produce)
app.command("replay")(replay.replay)


if __name__ == "__main__":  # pragma: no cover
    app()
