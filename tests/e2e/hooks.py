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


def poison_tagged(request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any] | None:
    """A post-process hook with a bug: for requests tagged ``poison`` it returns a result the schema cannot
    encode (``batch_size`` as a string)."""
    if (request.get("attributes") or {}).get("poison"):
        return {**result, "batch_size": "many"}
    return None


def stall_tagged(request: dict[str, Any]) -> None:
    """A pre-process hook that hangs (a stuck call to some service) for requests tagged ``stall``."""
    if (request.get("attributes") or {}).get("stall"):
        import time

        time.sleep(30)
