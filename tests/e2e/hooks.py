"""Hooks for the end-to-end tests, configured into a worker by dotted path."""

from __future__ import annotations

from typing import Any


def fail_when_asked(request: dict[str, Any]) -> None:
    """A pre-process hook that raises for requests carrying the attribute ``fail_hook``."""
    if (request.get("attributes") or {}).get("fail_hook"):
        raise RuntimeError("hook refused this event on purpose")


def tag_result(request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A post-process hook that leaves a visible mark on every result."""
    return {**result, "worker_id": result["worker_id"] + "+hooked"}
