"""What a writer schema means for reading, decided once per writer (fingerprint or registry id) and cached
by the codec: whether our reader can resolve it, why not (a different record, or a later version of ours),
the tables fastavro's direct entry point needs, and the request's direct reader where the pair has one.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader
from fastavro.read import SchemaResolutionError

from pipeline.serde import _fastpath
from pipeline.serde.codes import ErrorCode
from pipeline.serde.compat import incompatibilities
from pipeline.serde.errors import DecodeError
from pipeline.serde.item_count import Over, item_counter
from pipeline.serde.limits import show_bytes
from pipeline.serde.request_wire import DirectRead, direct_reader
from pipeline.serde.store import SchemaStore, SchemaVersion


@dataclass(frozen=True, slots=True)
class Reading:
    """How to read bodies of one writer schema: fastavro's parsed writer and reader (None: same schema)."""

    writer: Any
    reader: Any
    label: str
    error: str | None = None
    named: dict[str, dict[str, Any]] | None = None
    """fastavro's named-type tables for the direct entry point, filled once per pair."""
    code: ErrorCode = ErrorCode.SCHEMA_RESOLUTION_FAILED
    """Why records of this writer cannot be read, when ``error`` says they cannot."""
    count_items: Callable[[bytes, int], Over | None] | None = None
    """Counts a record's items on its bytes (:mod:`pipeline.serde.item_count`), when the codec validates."""
    fast_read: Callable[..., Any] | None = None
    """fastavro's compiled reader (:mod:`pipeline.serde._fastpath`); None: its public API."""
    direct: DirectRead | None = None
    """The request's own reader for this pair (:mod:`pipeline.serde.request_wire`), where there is one."""

    def read(self, data: bytes, start: int) -> tuple[Any, int]:
        """The body that starts at ``start`` -> (its datum, where it ends); DecodeError when it cannot be read.

        The direct reader goes first; a record it does not vouch for is read again by fastavro, whose
        verdict (and, for a bad record, whose account of what is wrong) is the codec's."""
        if self.direct is not None and data.__class__ is bytes:
            try:
                return self.direct(data, start)
            except Exception:
                pass
        buf = io.BytesIO(data)
        buf.seek(start)
        try:
            if self.fast_read is not None:
                datum = self.fast_read(buf, self.writer, self.named, self.reader, _fastpath.READ_OPTIONS)
            else:
                datum = schemaless_reader(buf, self.writer, self.reader)
        except EOFError:
            raise DecodeError(
                ErrorCode.TRUNCATED, f"{self.label}: the body ends early, at byte {len(data):,} ({show_bytes(data)})"
            ) from None
        except SchemaResolutionError as exc:
            raise DecodeError(
                ErrorCode.SCHEMA_RESOLUTION_FAILED, f"{self.label}: {cut_text(exc)} ({show_bytes(data)})"
            ) from None
        except Exception as exc:  # UnicodeDecodeError, IndexError (bad union/enum index), ValueError, ...
            raise DecodeError(
                ErrorCode.INVALID_DATUM,
                f"{self.label}: malformed body near byte {buf.tell():,} ({type(exc).__name__}: {cut_text(exc)}; "
                f"{show_bytes(data)})",
            ) from None
        return datum, buf.tell()


def union_hints(schema: dict[str, Any]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """For each top-level field that is a union of records, a key unique to each branch -> branch name.

    fastavro picks an untagged union branch by validating the datum against every branch (an embedding's
    384 floats each time); a ``(name, value)`` tuple skips that, so the codec tags the dict by its keys.
    """
    namespace = schema.get("namespace", "")
    hints = []
    for fld in schema["fields"]:
        branches = fld["type"] if isinstance(fld["type"], list) else []
        records = [b for b in branches if isinstance(b, dict) and b.get("type") == "record"]
        if len(records) < 2:
            continue
        keys = [{f["name"] for f in r["fields"]} for r in records]
        table = []
        for i, rec in enumerate(records):
            others = set().union(*(k for j, k in enumerate(keys) if j != i))
            unique = sorted(keys[i] - others)
            if unique:
                name = rec["name"] if "." in rec["name"] else f"{rec.get('namespace', namespace)}.{rec['name']}"
                table.append((unique[0], name.lstrip(".")))
        if len(table) == len(records):
            hints.append((fld["name"], tuple(table)))
    return tuple(hints)


def pair(
    reader: SchemaVersion,
    store: SchemaStore,
    writer_json: Any,
    writer_parsed: Any,
    writer_fp: bytes,
    label: str,
    known: SchemaVersion | None,
    max_items: int | None,
    fast: bool = True,
) -> Reading:
    """Check a new writer against our reader once; the verdict is cached with the pair.

    A writer that our reader cannot resolve is ``SCHEMA_TOO_NEW`` when it is a version of our reader's
    own record (same full name) that is later than the reader: one this pipeline does not ship, or a
    later one of its chain. Any other is ``SCHEMA_RESOLUTION_FAILED``: a different record altogether.
    ``fast``: fastavro's compiled reader and the request's direct reader, where there are; else only
    fastavro's public API (the reference the tests compare them with).
    """
    count = item_counter(writer_parsed, max_items) if max_items is not None else None
    fast_read = _fastpath.entry_points()[1] if fast else None
    direct = direct_reader(writer_fp, reader.fingerprint) if fast else None
    if writer_fp == reader.fingerprint:
        named = _fastpath.reading_named(writer_parsed, None)
        return Reading(writer_parsed, None, label, None, named, count_items=count, fast_read=fast_read, direct=direct)
    try:
        problems = incompatibilities(reader.schema, writer_json)
    except Exception as exc:
        problems = [f"cannot check: {cut_text(exc)}"]
    if problems:
        later = known is None or (known.chain == reader.chain and known.version > reader.version)
        if later and full_name(writer_json) == reader.full_name:
            shipped = len(store.chains.get(reader.chain, []))
            return Reading(
                None,
                None,
                label,
                f"{label}: a version of {reader.full_name} newer than this pipeline ships (v1..v{shipped}), "
                f"which {reader.label} cannot read: {'; '.join(problems)}; upgrade the pipeline's schemas",
                code=ErrorCode.SCHEMA_TOO_NEW,
            )
        return Reading(None, None, label, f"{label} -> {reader.label}: {'; '.join(problems)}")
    named = _fastpath.reading_named(writer_parsed, reader.parsed)
    label = f"{label} -> {reader.label}"
    return Reading(
        writer_parsed, reader.parsed, label, None, named, count_items=count, fast_read=fast_read, direct=direct
    )


def full_name(schema: Any) -> str:
    """A record schema's full name (``namespace.name``), empty for anything else."""
    if not isinstance(schema, dict):
        return ""
    name, namespace = str(schema.get("name", "")), schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def cut_text(exc: BaseException, n: int = 300) -> str:
    """An exception's text, cut short: a library's message may quote the hostile value it choked on."""
    text = str(exc)
    return text if len(text) <= n else f"{text[:n]}..."
