"""`pipeline tail TOPIC`: decoded records as JSON lines on stdout."""

from __future__ import annotations

import json

import typer

from pipeline.cli.common import CommandError, broker_settings, handle_errors


@handle_errors
def tail(
    ctx: typer.Context,
    topic: str = typer.Argument(..., help="Topic to read."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest record."),
    from_time: str | None = typer.Option(None, "--from", help="Start at a time: ISO-8601 or -15m, -2h."),
    max_records: int | None = typer.Option(None, "--max", min=1, help="Stop after N records."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep reading new records (Ctrl-C stops)."),
    partition: int | None = typer.Option(None, "--partition", min=0, help="Only this partition."),
) -> None:
    """Decode each record (request, result or error event; dead letters with their context headers) to one
    JSON line; bytes are base64. Without --follow it reads from the beginning (or --from) to the end the
    topic had at start; with --follow it starts at the end unless told otherwise and goes on."""
    from pipeline.ops.tail import tail as tail_records
    from pipeline.ops.timespec import parse_time

    if from_beginning and from_time is not None:
        raise CommandError("give at most one of --from-beginning and --from")
    time_ms = parse_time(from_time) if from_time is not None else None
    settings = broker_settings(ctx)
    for row in tail_records(
        settings,
        topic,
        from_beginning=from_beginning,
        from_time_ms=time_ms,
        follow=follow,
        partition=partition,
        max_records=max_records,
    ):
        typer.echo(json.dumps(row))
