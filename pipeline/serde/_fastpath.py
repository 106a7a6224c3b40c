"""fastavro's compiled entry points, called without the per-message wrapper of the schemaless API.

``schemaless_writer`` and ``schemaless_reader`` re-run ``parse_schema`` on every call (a check and a copy
of the named-type table) and go through a BytesIO; for a request that is about a sixth of the time. The
compiled ``write_data`` and ``_read_data`` they call are used here directly with tables built once. This is
still fastavro's encoder and decoder; only the call is different. When the compiled module is missing or
its signature changed (a pure-Python install, a future fastavro), :func:`entry_points` gives None for both
and the codec uses the public schemaless API; tests check both give the same bytes and datums.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import Any

import fastavro

WRITE_OPTIONS: dict[str, Any] = {"strict": False, "strict_allow_default": False, "disable_tuple_notation": False}
READ_OPTIONS: dict[str, Any] = {
    "return_record_name": False,
    "return_record_name_override": False,
    "handle_unicode_errors": "strict",
    "return_named_type": False,
    "return_named_type_override": False,
}


def named_types(parsed: Any) -> dict[str, Any]:
    """fastavro's named-type table of a parsed schema."""
    named: dict[str, Any] = {}
    if parsed is not None:
        fastavro.parse_schema(parsed, named)
    return named


def reading_named(writer: Any, reader: Any) -> dict[str, dict[str, Any]]:
    return {"writer": named_types(writer), "reader": named_types(reader)}


@functools.cache
def entry_points() -> tuple[Callable[..., None] | None, Callable[..., Any] | None]:
    """fastavro's compiled ``(write_data, read_data)``, checked against the public API once per process on
    first use; ``(None, None)`` when they are missing or disagree."""
    try:
        from fastavro._read import _read_data as read  # type: ignore[attr-defined]
        from fastavro._write import write_data as write  # type: ignore[attr-defined]
    except ImportError:
        return None, None
    # Smoke test against the public API: any difference and the fast path is off.
    schema = fastavro.parse_schema(
        {"type": "record", "name": "Probe", "fields": [{"name": "a", "type": ["null", "string"]}]}
    )
    try:
        buf = bytearray(b"\x01")
        write(buf, {"a": "x"}, schema, named_types(schema), "", WRITE_OPTIONS)
        ref = io.BytesIO()
        fastavro.schemaless_writer(ref, schema, {"a": "x"})
        if bytes(buf) != b"\x01" + ref.getvalue():
            return None, None
        got = read(io.BytesIO(ref.getvalue()), schema, reading_named(schema, None), None, READ_OPTIONS)
        if got != {"a": "x"}:
            return None, None
    except Exception:
        return None, None
    return write, read
