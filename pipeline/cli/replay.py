"""`pipeline replay`: copy a range of one topic to another, exactly once, resumable."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from pipeline.cli.common import CommandError, broker_settings, console, err_console, handle_errors

POSITION_HELP = "ISO-8601 time (2026-11-24T10:00:00Z), relative (-15m, -2h) or offsets (0:100,1:250)."
FILTER_HELP = (
    "NAME=V1[,V2] or NAME!=V1[,V2], repeatable, all must hold. NAME: key, partition, header.<name>, or a "
    "field of the decoded event: type (request/result/error), model, priority, source, event_id, error_code, "
    "tenant, model.<f>, attributes.<k>."
)


@handle_errors
def replay(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", help="Topic to copy from."),
    target: str = typer.Option(..., "--target", help="Topic to copy to (must exist)."),
    start: str | None = typer.Option(None, "--from", help=f"Start (default: the beginning). {POSITION_HELP}"),
    end: str | None = typer.Option(
        None, "--to", help=f"End, exclusive (default: the end as the replay is first planned). {POSITION_HELP}"
    ),
    filters: list[str] = typer.Option([], "--filter", help=FILTER_HELP),
    rate: float | None = typer.Option(None, "--rate", min=0.001, help="At most N source records per second."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be copied; write nothing."),
    replay_id: str | None = typer.Option(
        None, "--replay-id", help="Name of this replay (default: derived from the options, so a re-run resumes)."
    ),
    transaction_records: int = typer.Option(5000, "--transaction-size", min=1, help="Records per transaction."),
) -> None:
    """Copy records with their key, headers, timestamp and (when the target has enough partitions) partition,
    adding __pipeline.replay.{id,topic,partition,offset} headers.

    Exactly once: records and the replay's progress are committed in one Kafka transaction, so an
    interrupted replay run again with the same options (or --replay-id) continues where the last
    committed transaction ended, and stops at the end offsets captured when it was first planned, even
    while the source is still being written.
    """
    from pipeline.ops.replay import plan_replay, run_replay
    from pipeline.ops.replay_plan import parse_replay_filters, replay_id_for
    from pipeline.ops.timespec import parse_position

    flt = parse_replay_filters(filters)
    start_pos = parse_position(start) if start is not None else None
    end_pos = parse_position(end) if end is not None else None
    rid = replay_id or replay_id_for(source, target, start, end, filters)
    settings = broker_settings(ctx)
    planned = plan_replay(settings, rid, source, target, start_pos, end_pos)
    plan = planned.plan
    if plan.total == 0:
        raise CommandError(f"no records in the range on {source}: nothing to replay")
    if planned.resumed and planned.left == 0:
        console().print(f"replay {rid}: already complete ({plan.total} records in its range); nothing to do")
        return
    if planned.resumed:
        console().print(
            f"replay {rid}: resuming, {plan.total - planned.left} of {plan.total} already copied "
            "(the range recorded when it was first planned; a new --replay-id starts another)",
            highlight=False,
        )
    else:
        console().print(f"replay {rid}: {plan.total} records from {source} to {target}")
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
        disable=not err_console().is_terminal,
    ) as bar:
        task = bar.add_task("replay", total=planned.left)
        report = run_replay(
            settings,
            planned,
            flt,
            rate=rate,
            transaction_records=transaction_records,
            dry_run=dry_run,
            progress=lambda n: bar.advance(task, n),
        )
    verb = "would copy" if dry_run else "copied"
    speed = (report.copied + report.filtered) / report.seconds if report.seconds > 0 else 0.0
    console().print(
        f"replay {rid}: {verb} {report.copied}, filtered out {report.filtered}"
        + ("" if dry_run else f", {report.transactions} transactions")
        + f", {report.seconds:.1f} s ({speed:,.0f} records/s)",
        highlight=False,
    )
