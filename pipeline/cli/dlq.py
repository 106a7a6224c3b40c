"""`pipeline dlq list|show|redrive`: look into the dead-letter topic and send records back once fixed."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from pipeline.cli.common import CommandError, broker_settings, console, handle_errors

app = typer.Typer(help="Inspect and redrive dead letters.", no_args_is_help=True)

TOPIC_HELP = "Dead-letter topic (default: config topics.dead_letter)."
FILTER_HELP = (
    "NAME=V1[,V2] or NAME!=V1[,V2], repeatable, all must hold. NAME: error_code, stage, exception (class), "
    "topic, partition, model, event_id, group, key, header.<name>."
)


@app.command("list")
@handle_errors
def list_(ctx: typer.Context, topic: str | None = typer.Option(None, "--topic", help=TOPIC_HELP)) -> None:
    """Count dead letters by stage, exception class and error code."""
    from pipeline.ops.dlq import read_dead_letters, summarise

    settings = broker_settings(ctx)
    name = topic or settings.topics.dead_letter
    counts = summarise(read_dead_letters(settings, name))
    table = Table(title=f"dead letters on {name}: {sum(counts.values())}")
    for col in ("stage", "exception class", "error code", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for (stage, cls, code), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(stage, cls, code, str(n))
    console().print(table)


@app.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    topic: str | None = typer.Option(None, "--topic", help=TOPIC_HELP),
    error_code: list[str] = typer.Option([], "--error-code", help="Only these error codes (repeatable)."),
    filters: list[str] = typer.Option([], "--filter", help=FILTER_HELP),
    max_records: int | None = typer.Option(None, "--max", min=1, help="Stop after N records."),
) -> None:
    """Dead letters as JSON lines: headers as text, key and payload base64."""
    from pipeline.ops.dlq import Filter, read_dead_letters

    settings = broker_settings(ctx)
    flt = Filter.parse(error_code, filters)
    shown = 0
    for dl in read_dead_letters(settings, topic or settings.topics.dead_letter):
        if max_records is not None and shown >= max_records:
            break
        if flt.keeps(dl):
            typer.echo(json.dumps(dl.as_json()))
            shown += 1


@app.command("redrive")
@handle_errors
def redrive_(
    ctx: typer.Context,
    topic: str | None = typer.Option(None, "--topic", help=TOPIC_HELP),
    error_code: list[str] = typer.Option([], "--error-code", help="Only these error codes (repeatable)."),
    filters: list[str] = typer.Option([], "--filter", help=FILTER_HELP),
    max_redrives: int = typer.Option(3, "--max-redrives", min=1, help="Refuse records redriven this often."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be sent; send nothing."),
) -> None:
    """Send dead letters back to the topic they were consumed from, with their original headers."""
    from pipeline.ops.dlq import Filter, partition_counts, read_dead_letters, redrive

    flt = Filter.parse(error_code, filters)
    settings = broker_settings(ctx)
    letters = list(read_dead_letters(settings, topic or settings.topics.dead_letter))
    targets = sorted({t for dl in letters if (t := dl.source_topic)})
    known = partition_counts(settings, targets) if targets else {}
    report = redrive(settings, letters, flt, max_redrives, dry_run, known)
    verb = "would send" if dry_run else "sent"
    for target, n in sorted(report.by_topic.items()):
        console().print(f"{verb} {n} to {target}")
    console().print(
        f"{verb} {report.sent}, refused {report.refused} (redriven {max_redrives} times already), "
        f"no target {report.no_topic}, filtered out {report.filtered}, failed {report.failed}",
        highlight=False,
    )
    if report.failed:
        raise CommandError(f"{report.failed} dead letters could not be sent back")
