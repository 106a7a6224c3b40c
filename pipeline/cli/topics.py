"""`pipeline topics create|describe`."""

from __future__ import annotations

import typer
from rich.table import Table

from pipeline.cli.common import console, handle_errors, settings_from
from pipeline.kafka.admin import connect_admin
from pipeline.kafka.topics import create_topics, describe_topics, topic_specs

app = typer.Typer(help="Create and inspect the pipeline's topics.", no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    partitions: int | None = typer.Option(None, min=1, help="Partitions per topic (config: partitions)."),
    replication: int | None = typer.Option(
        None, min=1, help="Replication factor (config; default: min(3, the cluster's brokers))."
    ),
) -> None:
    """Create the pipeline's topics; existing ones are left as they are."""
    settings = settings_from(ctx, partitions=partitions, replication_factor=replication)
    admin = connect_admin(settings)
    specs = topic_specs(settings)
    created = create_topics(admin, specs)
    for spec in specs:
        state = "[green]created[/]" if created.get(spec.name) else "[dim]exists[/]"
        console().print(f"{spec.name:<32} {state}")


@app.command("describe")
@handle_errors
def describe(ctx: typer.Context) -> None:
    """Show the pipeline's topics: partitions, replication and the configs that matter."""
    settings = settings_from(ctx)
    admin = connect_admin(settings)
    specs = topic_specs(settings)
    states = describe_topics(admin, [s.name for s in specs])
    table = Table(title=f"topics on {settings.bootstrap_servers}")
    for col in (
        "role",
        "topic",
        "partitions",
        "replication",
        "retention.ms",
        "min.insync.replicas",
        "max.message.bytes",
    ):
        table.add_column(col)
    missing = []
    for spec in specs:
        st = states.get(spec.name)
        if st is None:
            missing.append(spec.name)
            table.add_row(spec.role, spec.name, "[red]missing[/]", "", "", "", "")
            continue
        table.add_row(
            spec.role,
            st.name,
            str(st.partitions),
            str(st.replication),
            st.config.get("retention.ms", ""),
            st.config.get("min.insync.replicas", ""),
            st.config.get("max.message.bytes", ""),
        )
    console().print(table)
    if missing:
        console().print(f"[yellow]{len(missing)} missing: run `pipeline topics create`[/]")
        raise typer.Exit(1)
