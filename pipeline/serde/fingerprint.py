"""Schema fingerprints as the Avro spec's single-object encoding puts them on the wire.

The spec: the 64-bit CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing Canonical Form,
little-endian. fastavro's ``fingerprint(..., "CRC-64-AVRO")`` returns the hex of exactly those eight bytes
(the hex of the little-endian byte string, as Java's ``SchemaNormalization`` and the ``avro`` library
lay them out), so ``bytes.fromhex`` gives the header bytes; a test checks this against ``avro``.
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import fingerprint, to_parsing_canonical_form

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_LEN = 10
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_LEN = 5


def canonical_form(schema: Any) -> str:
    """Parsing Canonical Form of a schema (a JSON-like value or a fastavro-parsed schema)."""
    return str(to_parsing_canonical_form(schema))


def rabin_fingerprint(schema: Any) -> bytes:
    """The eight fingerprint bytes of the single-object header, little-endian as the spec says."""
    return bytes.fromhex(fingerprint(canonical_form(schema), "CRC-64-AVRO"))


def fingerprint_int(fp: bytes) -> int:
    """The fingerprint as the unsigned 64-bit number Java prints, for messages and comparisons."""
    return int.from_bytes(fp, "little", signed=False)
