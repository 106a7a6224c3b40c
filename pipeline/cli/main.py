"""The ``pipeline`` command: one typer app, one sub-app per concern, each in its own module."""

from __future__ import annotations

import typer

from pipeline.cli import model, schemas, topics, worker

app = typer.Typer(
    name="pipeline",
    help="Event-driven ML inference on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(topics.app, name="topics")
app.add_typer(schemas.app, name="schemas")
app.add_typer(model.app, name="model")
app.command("worker")(worker.worker)


if __name__ == "__main__":  # pragma: no cover
    app()
