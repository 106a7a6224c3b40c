"""`pipeline worker`: runs the processors (Faust agents fed by micro-batch readers); `pipeline leave`: a
worker with an id that is gone for good hands its partitions over now."""

from __future__ import annotations

import sys
from enum import StrEnum

import typer

from pipeline.cli.common import CommandError, broker_settings, console, err_console, handle_errors, settings_from
from pipeline.observability.logs import configure_logging


class ProcessLayout(StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


class Guarantee(StrEnum):
    at_least_once = "at_least_once"
    exactly_once = "exactly_once"


class Role(StrEnum):
    input = "input"
    inference = "inference"
    all = "all"


@handle_errors
def worker(
    ctx: typer.Context,
    role: Role = typer.Option(Role.all, help="Which agents this worker runs."),
    worker_id: str | None = typer.Option(
        None, help="Stable worker id: static group membership, so a restart keeps its partitions."
    ),
    batch_size: int | None = typer.Option(None, min=1, help="Inference micro-batch size N."),
    batch_max_wait_ms: int | None = typer.Option(
        None, min=0, help="Close a batch W ms after its first event (unless a batch already waits for the agent)."
    ),
    model: str | None = typer.Option(None, help="Default model (config: model)."),
    log_level: str | None = typer.Option(None, help="crit, error, warn, info or debug."),
    metrics_port: int | None = typer.Option(
        None, min=0, max=65535, help="Port for /metrics, /healthz and /readyz (0: off; config: metrics_port)."
    ),
    metrics_host: str | None = typer.Option(
        None, help="Address /metrics, /healthz and /readyz bind to (config: metrics_host; default 0.0.0.0)."
    ),
    process_per_role: ProcessLayout | None = typer.Option(
        None,
        help="Each role in a process of its own (auto: with 2 or more CPUs; config: process_per_role).",
    ),
    guarantee: Guarantee | None = typer.Option(
        None,
        "--guarantee",
        help="at_least_once (default) or exactly_once: outputs and offsets in one transaction per commit "
        "interval (config: processing_guarantee).",
    ),
    status: bool | None = typer.Option(
        None, "--status/--no-status", help="A live status line on stderr (default: when stderr is a terminal)."
    ),
    leave_on_stop: bool | None = typer.Option(
        None,
        "--leave-on-stop/--keep-on-stop",
        help="With --worker-id: leave the groups for good when stopped, so the partitions move at once "
        "(default: keep them for a restart until session_timeout_ms; config: leave_on_stop).",
    ),
) -> None:
    """Run the pipeline's agents in the foreground until SIGTERM or Ctrl-C."""
    from pipeline.cpus import available_cpus
    from pipeline.worker.layout import ROLES, process_groups
    from pipeline.worker.preflight import PreflightError, preflight

    settings = settings_from(
        ctx,
        worker_id=worker_id,
        batch_size=batch_size,
        batch_max_wait_ms=batch_max_wait_ms,
        model=model,
        log_level=log_level,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        process_per_role=process_per_role.value if process_per_role else None,
        processing_guarantee=guarantee.value if guarantee else None,
        leave_on_stop=leave_on_stop,
    )
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    roles = ROLES if role is Role.all else (role.value,)
    try:
        settings = preflight(settings, roles)  # a clear line now rather than a traceback at the first record
    except PreflightError as exc:
        raise CommandError(str(exc)) from None
    groups = process_groups(roles, settings.process_per_role, available_cpus())
    err_console().print(
        f"worker role={role.value} broker={settings.bootstrap_servers} model={settings.model} "
        f"batch={settings.batch_size}/{settings.batch_max_wait_ms}ms id={settings.worker_id or '-'} "
        f"guarantee={settings.processing_guarantee} "
        f"processes={' '.join('+'.join(group) for group in groups)}",
        highlight=False,
    )
    loglevel = _faust_level(settings.log_level)
    status_line = sys.stderr.isatty() if status is None else status
    if len(groups) > 1:
        # The supervisor only starts, watches and stops the role processes: it never imports what they run
        # (Faust, the codecs, ONNX Runtime), so its memory is the interpreter's and the settings'.
        from pipeline.worker.supervisor import run_supervised

        raise typer.Exit(run_supervised(settings, groups, loglevel, status_line))
    from pipeline.worker.run import HealthBinding, run_worker

    health = HealthBinding(settings.metrics_port, settings.metrics_host) if settings.metrics_port else None
    raise typer.Exit(run_worker(settings, roles, loglevel=loglevel, status_line=status_line, health=health))


@handle_errors
def leave(
    ctx: typer.Context,
    worker_id: str = typer.Option(..., help="The id the stopped worker ran with."),
    role: Role = typer.Option(Role.all, help="The role(s) it ran."),
) -> None:
    """Remove a stopped worker's static members from its consumer groups: its partitions go to the other
    workers now instead of after session_timeout_ms. For a worker that is not coming back."""
    from pipeline.kafka.membership import remove_members
    from pipeline.worker.build import static_members
    from pipeline.worker.layout import ROLES
    from pipeline.worker.readers import reader_names

    settings = broker_settings(ctx, worker_id=worker_id)
    roles = ROLES if role is Role.all else (role.value,)
    failed = False
    for removal in remove_members(settings, static_members(settings, reader_names(roles))):
        # UNKNOWN_MEMBER_ID: not a member (never joined, already left, or its session expired): nothing to do.
        gone = removal.error in (None, "UnknownMemberIdError")
        failed = failed or not gone
        outcome = "removed" if removal.error is None else "not a member" if gone else removal.error
        console().print(f"{removal.group}: {removal.instance_id}: {outcome}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _faust_level(level: str) -> str:
    """Faust's CLI levels are crit, error, warn, info, debug (it refuses `warning`)."""
    level = level.lower()
    return {"warning": "warn", "critical": "crit"}.get(level, level)
