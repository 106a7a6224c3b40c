"""Reader/writer compatibility, by the ``avro`` library's checker (a port of Java's ``SchemaCompatibility``).

Used twice: by ``pipeline schemas check`` on every version chain, and by the codec the first time it meets
a writer schema, so that an incompatible pair is refused once, with the field named, instead of failing
inside fastavro on every message.
"""

from __future__ import annotations

import json
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType


def _parse(schema: Any) -> avro.schema.Schema:
    return avro.schema.parse(schema if isinstance(schema, str) else json.dumps(schema))


def incompatibilities(reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty when it can.

    Each entry names the location (a JSON-pointer-like path through fields) and the reason.
    """
    result = ReaderWriterCompatibilityChecker().get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({i.value for i in result.incompatibilities})) or "incompatible"
    where = ", ".join(sorted(result.locations))
    detail = "; ".join(sorted(result.messages))
    return [f"{kinds} at {where}: {detail}"]
