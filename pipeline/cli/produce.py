"""`pipeline produce`: send InferenceRequests written as JSON lines (a file or stdin)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.cli.common import CommandError, broker_settings, console, err_console, handle_errors


@handle_errors
def produce(
    ctx: typer.Context,
    topic: str | None = typer.Option(None, "--topic", help="Target topic (default: config topics.input)."),
    file: Path | None = typer.Option(None, "--file", help="JSON lines file; stdin when not given."),
    rate: float | None = typer.Option(None, "--rate", min=0.001, help="At most N records per second."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first invalid line."),
) -> None:
    """Send InferenceRequests written as JSON lines, one per line, validated and encoded as the worker
    expects. Invalid lines are reported with their line numbers and the rest is still sent (--strict
    stops at the first); the exit status is 1 when any line was not sent.

    \b
    A line is the request as JSON; missing event_id, created_at, source, priority, attributes are filled in:
      {"model": "tiny", "tensors": [{"name": "x", "dtype": "float32", "shape": [8], "data": "<base64>"}]}
      {"model": "minilm-l6", "text": "hello", "key": "user-1", "priority": "HIGH", "attributes": {"a": "b"}}
    "key" (text) or "key_b64" sets the record key; tensor "data" is base64 of the little-endian bytes;
    "payload" in the schema's own shape works too. The rows `pipeline tail` prints for requests are
    accepted as they are (key, headers and request kept).
    """
    from pipeline.ops.produce import produce_lines
    from pipeline.ops.ranges import require_topic
    from pipeline.serde import Codecs

    settings = broker_settings(ctx)
    name = topic or settings.topics.input
    if file is not None and not file.is_file():
        raise CommandError(f"no such file: {file}")
    require_topic(settings, name)
    codec = Codecs.from_settings(settings).request
    stream = file.open(encoding="utf-8") if file is not None else sys.stdin
    try:
        # a file's lines are counted first (cheap next to encoding), so its bar has a total and an ETA
        total = _count_lines(file) if file is not None else None
        with Progress(
            SpinnerColumn(),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console(),
            transient=True,
            disable=not err_console().is_terminal,
        ) as bar:
            task = bar.add_task("produce", total=total)
            report = produce_lines(
                settings,
                name,
                codec,
                stream,
                rate=rate,
                strict=strict,
                progress=lambda n: bar.advance(task, n),
            )
    finally:
        if file is not None:
            stream.close()
    for lineno, why in report.invalid:
        err_console().print(f"line {lineno}: {why}", highlight=False, soft_wrap=True)
    console().print(f"sent {report.sent}, failed {report.failed}, invalid {len(report.invalid)}", highlight=False)
    if report.invalid and strict:
        raise CommandError(f"stopped at line {report.invalid[0][0]} (--strict); {report.sent} sent before it")
    if report.invalid:
        raise CommandError(f"{len(report.invalid)} invalid line(s) not sent; the other {report.sent} were sent")
    if report.failed:
        raise CommandError(f"{report.failed} records were not acknowledged by the broker")


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())
