"""`pipeline schemas check`: the schemas folder is fit to publish (compatibility, docs, examples)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pipeline.cli.common import console, handle_errors, settings_from

app = typer.Typer(help="Check the Avro event schemas.", no_args_is_help=True)


@app.command("check")
@handle_errors
def check(
    ctx: typer.Context,
    schemas_dir: Path | None = typer.Option(
        None, "--schemas-dir", help="Schemas folder to check (config: schemas_dir).", file_okay=False
    ),
) -> None:
    """Every version chain backward and forward compatible, every field documented, every example valid."""
    from pipeline.serde.check import run_check

    root = schemas_dir if schemas_dir is not None else settings_from(ctx).schemas_dir
    report = run_check(root)
    chains = ", ".join(f"{name} (v1..v{n})" for name, n in report.chains.items()) or "none"
    console().print(f"schemas in [bold]{root}[/]: {chains}", highlight=False)
    console().print(
        f"{report.pairs_checked} reader/writer pairs and {report.examples_checked} examples checked", highlight=False
    )
    if report.ok:
        console().print("[bold green]ok[/]: compatible both ways, documented, examples valid")
        return
    table = Table(title=f"{len(report.findings)} problem(s)", show_lines=False)
    table.add_column("check", style="red")
    table.add_column("where")
    table.add_column("problem", overflow="fold")
    for finding in report.findings:
        table.add_row(finding.kind, finding.where, finding.message)
    console().print(table)
    raise typer.Exit(1)
