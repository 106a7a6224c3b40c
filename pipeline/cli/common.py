"""What every subcommand shares: loading settings and turning known failures into one clear line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from pipeline.config import ConfigError, Settings, load_settings
from pipeline.kafka.admin import BrokerUnavailable
from pipeline.model.errors import ModelError
from pipeline.observability.logs import REDACT, protect
from pipeline.ops.errors import CommandError
from pipeline.stages.hooks import HookConfigError

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "CommandError",
    "broker_settings",
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "is_tty",
    "settings_from",
]


@functools.cache
def console() -> Console:
    """Standard output; piped output (scripts, tests, `| grep`) gets full-width tables, not ellipses."""
    return Console(width=None if sys.stdout.isatty() else 200)


@functools.cache
def err_console() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console().print(f"[bold red]error:[/] {REDACT(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (ConfigError, BrokerUnavailable, ModelError, CommandError, HookConfigError) as exc:
            # their message is already meant for a person: one line, non-zero exit, no traceback
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err_console().print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def settings_from(ctx: typer.Context | None = None, **overrides: Any) -> Settings:
    """Settings with the global ``--config`` file and any per-command overrides that were given."""
    config_file = None
    if ctx is not None and ctx.obj:
        config_file = ctx.obj.get("config")
    settings = load_settings(config_file, **{k: v for k, v in overrides.items() if v is not None})
    protect(settings.secret_values())
    return settings


def broker_settings(ctx: typer.Context | None = None, **overrides: Any) -> Settings:
    """Settings for a command that talks to the broker, once the broker has answered: a wrong password or
    an untrusted certificate is then one line within seconds (a client's own calls would only time out)."""
    from pipeline.kafka.admin import connect_admin

    settings = settings_from(ctx, **overrides)
    connect_admin(settings)
    return settings


def is_tty() -> bool:
    return sys.stdout.isatty()
