"""`pipeline offsets reset`: rewind or fast-forward a stopped consumer group on one topic."""

from __future__ import annotations

import typer
from rich.table import Table

from pipeline.cli.common import CommandError, broker_settings, console, handle_errors

app = typer.Typer(help="Consumer group offsets.", no_args_is_help=True)


@app.command("reset")
@handle_errors
def reset(
    ctx: typer.Context,
    group: str = typer.Option(..., "--group", help="Consumer group (must have no active members)."),
    topic: str = typer.Option(..., "--topic", help="Topic whose offsets to move."),
    to_datetime: str | None = typer.Option(None, "--to-datetime", help="ISO-8601 or relative (-15m, -2h)."),
    to_earliest: bool = typer.Option(False, "--to-earliest", help="The oldest record still in the log."),
    to_latest: bool = typer.Option(False, "--to-latest", help="The end: skip everything there now."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the change; alter nothing."),
) -> None:
    """Set GROUP's committed offsets on TOPIC; prints old -> new per partition."""
    from pipeline.ops.offsets import ResetTo, apply_reset, plan_reset
    from pipeline.ops.timespec import parse_time

    chosen = [
        n
        for n, on in (
            ("--to-datetime", to_datetime is not None),
            ("--to-earliest", to_earliest),
            ("--to-latest", to_latest),
        )
        if on
    ]
    if len(chosen) != 1:
        raise CommandError("give exactly one of --to-datetime, --to-earliest, --to-latest")
    time_ms = parse_time(to_datetime) if to_datetime is not None else None
    to = ResetTo.DATETIME if time_ms is not None else ResetTo.EARLIEST if to_earliest else ResetTo.LATEST
    settings = broker_settings(ctx)
    admin, changes = plan_reset(settings, group, topic, to, time_ms)
    table = Table(title=f"{group} on {topic}{' (dry run: nothing altered)' if dry_run else ''}")
    for col in ("partition", "old", "new", "moved"):
        table.add_column(col, justify="right")
    for c in changes:
        moved = "" if c.old is None else f"{c.new - c.old:+d}"
        table.add_row(str(c.partition), "-" if c.old is None else str(c.old), str(c.new), moved)
    console().print(table)
    if not dry_run:
        apply_reset(admin, group, topic, changes)
        console().print(f"reset {len(changes)} partition(s)")
