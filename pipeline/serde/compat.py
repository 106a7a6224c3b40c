"""Reader/writer compatibility, by the ``avro`` library's checker (a port of Java's ``SchemaCompatibility``).

Used twice: by ``pipeline schemas check`` on every version chain, and by the codec the first time it meets
a writer schema, so that an incompatible pair is refused once, with the field named, instead of failing
inside fastavro on every message.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import avro.schema


def _parse(schema: Any) -> avro.schema.Schema:
    import avro.schema  # only when a writer schema meets the codec: the single-object path never does

    return avro.schema.parse(schema if isinstance(schema, str) else json.dumps(schema))


def incompatibilities(reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty when it can.

    Each entry names the location (a JSON-pointer-like path through fields) and the reason.
    """
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    result = ReaderWriterCompatibilityChecker().get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({i.value for i in result.incompatibilities})) or "incompatible"
    reader_json = json.loads(reader) if isinstance(reader, str) else reader
    where = ", ".join(sorted(_with_field_names(reader_json, loc) for loc in result.locations))
    detail = "; ".join(sorted(result.messages))
    return [f"{kinds} at {where}: {detail}"]


def _with_field_names(schema: Any, location: str) -> str:
    """A checker location (``/fields/1/type``) with the field names it passes through added
    (``/fields/1/type (created_at)``), so that a message names the field and not only its index."""
    names: list[str] = []
    node = schema
    for token in location.strip("/").split("/"):
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
            if isinstance(node, dict) and "name" in node and "type" in node and "symbols" not in node:
                names.append(str(node["name"]))
        else:
            break
    return f"{location} ({'.'.join(names)})" if names else location
