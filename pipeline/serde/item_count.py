"""Counting a record's array items and map entries on its bytes, before the decoder builds any of them.

``max_items`` caps the items of all arrays and maps of one record together. Checked on a decoded datum
alone, a hostile record would already have cost its decode: fastavro builds every item it is given, about
200,000 tensor records in half a second from 800 kB. So a record too long to be within the cap by its
size alone (each item takes a byte at least: :mod:`pipeline.serde.schema_guard` makes sure of it) is first
walked here, skipping every value and counting items, and stops as soon as the count passes the cap: the
walk costs at most ``max_items`` items, whatever the record holds.

The walk only looks for too many items. Anything else wrong with the bytes (a bad union index, a length
past the end) stops it quietly and is left to the decoder, which says what it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Skip = Callable[[bytes, int, list[int]], int]
"""Reads one value at a position and returns the position after it; the list holds the record's item count
so far (one per walk, so that threads sharing a codec do not share a count)."""

Over = tuple[str, int, int]
"""Where the count passed the cap: the array or map (a field path), its own items so far, and the record's."""


class _Stop(Exception):
    """The bytes are not what the schema says: leave it to the decoder."""


class _TooMany(Exception):
    def __init__(self, over: Over) -> None:
        super().__init__(over)
        self.over = over


def _skip_varint(data: bytes, pos: int, state: list[int] | None = None) -> int:
    end = pos + 10
    while data[pos] & 0x80:
        pos += 1
        if pos >= end:
            raise _Stop
    return pos + 1


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise _Stop
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _skip_sized(data: bytes, pos: int, state: list[int] | None = None) -> int:
    size, pos = _varint(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise _Stop
    return end


def _fixed(size: int) -> Skip:
    def skip(data: bytes, pos: int, state: list[int]) -> int:
        end = pos + size
        if end > len(data):
            raise _Stop
        return end

    return skip


def _nothing(data: bytes, pos: int, state: list[int]) -> int:
    return pos


class _Counter:
    """Compiles a parsed writer schema into skip functions, each array and map checking the running count."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.names: dict[str, Skip] = {}

    def compile(self, schema: Any, path: str) -> Skip:
        if isinstance(schema, str):
            return self._primitive(schema) or self._named(schema)
        if isinstance(schema, list):
            return self._union([self.compile(b, path) for b in schema])
        if not isinstance(schema, dict):
            raise _Stop
        kind = schema.get("type")
        if isinstance(kind, dict | list):
            return self.compile(kind, path)
        if kind == "record" or kind == "error":
            return self._record(schema, path)
        if kind == "array":
            return self._blocks(self.compile(schema.get("items"), f"{path}[]"), path, key=False)
        if kind == "map":
            return self._blocks(self.compile(schema.get("values"), f"{path}{{}}"), path, key=True)
        if kind == "enum":
            return self._define(schema, _skip_varint)
        if kind == "fixed":
            return self._define(schema, _fixed(int(schema.get("size", 0))))
        found = self._primitive(kind) if isinstance(kind, str) else None
        if found is None:
            raise _Stop
        return found

    def _define(self, schema: dict[str, Any], skip: Skip) -> Skip:
        self.names[str(schema.get("name"))] = skip
        return skip

    def _named(self, name: str) -> Skip:
        found = self.names.get(name)
        if found is None:  # a recursive or unknown reference: not walked (the schema guard refuses those)
            raise _Stop
        return found

    @staticmethod
    def _primitive(name: str) -> Skip | None:
        return {
            "null": _nothing,
            "boolean": _fixed(1),
            "int": _skip_varint,
            "long": _skip_varint,
            "float": _fixed(4),
            "double": _fixed(8),
            "bytes": _skip_sized,
            "string": _skip_sized,
        }.get(name)

    def _record(self, schema: dict[str, Any], path: str) -> Skip:
        name = str(schema.get("name"))
        fields = [
            self.compile(f.get("type"), f"{path}.{f.get('name')}".lstrip(".")) for f in schema.get("fields") or ()
        ]

        def skip(data: bytes, pos: int, state: list[int]) -> int:
            for field in fields:
                pos = field(data, pos, state)
            return pos

        self.names[name] = skip
        return skip

    @staticmethod
    def _union(branches: list[Skip]) -> Skip:
        def skip(data: bytes, pos: int, state: list[int]) -> int:
            index, pos = _varint(data, pos)
            if not 0 <= index < len(branches):
                raise _Stop
            return branches[index](data, pos, state)

        return skip

    def _blocks(self, item: Skip, path: str, *, key: bool) -> Skip:
        cap = self.cap

        def skip(data: bytes, pos: int, state: list[int]) -> int:
            mine = 0
            while True:
                count, pos = _varint(data, pos)
                if count == 0:
                    return pos
                if count < 0:
                    count = -count
                    pos = _skip_varint(data, pos)  # the block's size in bytes
                mine += count
                state[0] += count
                if state[0] > cap:
                    raise _TooMany((path, mine, state[0]))
                for _ in range(count):
                    before = pos
                    if key:
                        pos = _skip_sized(data, pos)
                    pos = item(data, pos, state)
                    if pos == before:  # an item of no bytes: the guard refuses such schemas; never loop on one
                        raise _Stop

        return skip


def item_counter(parsed: Any, cap: int) -> Callable[[bytes, int], Over | None] | None:
    """For a fastavro-parsed writer schema: a function of (record, body start) that says where the record's
    items pass ``cap`` (None when they do not, or when the bytes are malformed); None when the schema
    cannot be walked (then the decoder alone reads it)."""
    counter = _Counter(cap)
    try:
        root = counter.compile(parsed, "")
    except (_Stop, TypeError, ValueError):
        return None

    def count(data: bytes, start: int) -> Over | None:
        try:
            root(data, start, [0])
        except _TooMany as exc:
            return exc.over
        except (_Stop, IndexError, RecursionError):
            return None
        return None

    return count
