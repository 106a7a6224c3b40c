"""Writer schemas we did not ship are read only when a record's bytes bound what reading it costs.

In registry mode the writer schema of a record is whatever its schema id names, and anyone who can register
under the input subject chooses it. The reader then follows that schema, including the fields our reader
skips. Two shapes of schema let a small record cost without bound, and both are refused, once per schema:

- an array whose items take no bytes (``null``, an empty record, a zero-size ``fixed``): its block count
  is a varint, so a 10-byte count of 2**62 keeps the reader looping over nothing (a map is safe: each entry
  has a key, one byte at least);
- a recursive type: each level takes a byte, so a 1 MB record nests a million levels deep, and fastavro's
  compiled reader recurses on the C stack until the process dies.

Schemas nested deeper than :data:`MAX_DEPTH` levels of JSON are refused before anything walks them
recursively. Every other count or length a record holds is bounded by its bytes, since each item takes at
least one; the size cap (``max_message_bytes``) bounds those.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64
"""JSON nesting of a writer schema; ours are below 20."""

# The fewest bytes a value of each primitive type takes on the wire.
_PRIMITIVE_BYTES = {
    "null": 0,
    "boolean": 1,
    "int": 1,
    "long": 1,
    "float": 4,
    "double": 8,
    "bytes": 1,
    "string": 1,
}


class _Refused(Exception):
    pass


def unbounded_reads(schema: Any) -> str | None:
    """Why reading records of writer ``schema`` (a JSON value) could cost more than their bytes; None when
    it cannot."""
    depth = _json_depth(schema)
    if depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep"
    try:
        _Walk().min_bytes(schema, "", "")
    except _Refused as exc:
        return str(exc)
    return None


def _json_depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (it runs before the schema is known to be shallow)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return depth
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


class _Walk:
    """One pass over a schema: the fewest bytes of each named type, and the names being defined."""

    def __init__(self) -> None:
        self.defined: dict[str, int] = {}
        self.open: set[str] = set()

    def min_bytes(self, schema: Any, namespace: str, path: str) -> int:
        if isinstance(schema, str):
            return self._named(schema, namespace, path)
        if isinstance(schema, list):  # a union: the branch index, then the smallest branch
            sizes = [self.min_bytes(branch, namespace, path) for branch in schema]
            return 1 + min(sizes, default=0)
        if not isinstance(schema, dict):
            raise _Refused(f"{path or 'schema'}: {type(schema).__name__} is not a type")
        kind = schema.get("type")
        if isinstance(kind, dict | list):
            return self.min_bytes(kind, namespace, path)
        if kind in _PRIMITIVE_BYTES:
            return _PRIMITIVE_BYTES[kind]
        if kind == "array":
            items = self.min_bytes(schema.get("items"), namespace, f"{path}[]")
            if items == 0:
                raise _Refused(f"{path or 'schema'}: an array of items that take no bytes")
            return 1
        if kind == "map":
            self.min_bytes(schema.get("values"), namespace, f"{path}{{}}")
            return 1
        if kind in ("record", "error", "enum", "fixed"):
            return self._define(schema, kind, namespace, path)
        if isinstance(kind, str):
            return self._named(kind, namespace, path)
        raise _Refused(f"{path or 'schema'}: type {kind!r} is not a type")

    def _full_name(self, name: Any, namespace: Any, enclosing: str) -> str:
        text = str(name)
        if "." in text:
            return text
        space = namespace if isinstance(namespace, str) else enclosing
        return f"{space}.{text}" if space else text

    def _define(self, schema: dict[str, Any], kind: str, enclosing: str, path: str) -> int:
        full = self._full_name(schema.get("name"), schema.get("namespace"), enclosing)
        if kind == "enum":
            size = 1
        elif kind == "fixed":
            given = schema.get("size")
            size = given if isinstance(given, int) and given > 0 else 0
        else:
            namespace = full.rpartition(".")[0]
            self.open.add(full)
            size = 0
            for fld in schema.get("fields") or ():
                if not isinstance(fld, dict):
                    raise _Refused(f"{path or full}: a field that is not an object")
                size += self.min_bytes(fld.get("type"), namespace, f"{path}.{fld.get('name')}".lstrip("."))
            self.open.discard(full)
        self.defined[full] = size
        return size

    def _named(self, name: str, namespace: str, path: str) -> int:
        if name in _PRIMITIVE_BYTES:
            return _PRIMITIVE_BYTES[name]
        candidates = (self._full_name(name, None, namespace), name)
        for full in candidates:
            if full in self.open:
                raise _Refused(f"{path or 'schema'}: type {full} contains itself (a recursive type)")
        for full in candidates:
            if full in self.defined:
                return self.defined[full]
        raise _Refused(f"{path or 'schema'}: unknown type {name!r}")
