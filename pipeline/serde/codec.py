"""``EventCodec``: Avro bytes <-> datums (dicts) for one record type, in one of two standard framings.

- ``single-object`` (default, no registry): the Avro spec's single-object encoding, ``C3 01``, the writer
  schema's 8-byte little-endian CRC-64-AVRO fingerprint, then the body. The reader finds the writer
  schema by fingerprint among ``schemas/`` and resolves it to its own reader schema (newest by default).
- ``confluent``: ``00``, the 4-byte big-endian registry id, then the body; subjects are ``TOPIC-value``.

Either framing is *read* whatever was configured (the magic byte tells them apart), so a topic can move from
one to the other; a Confluent frame needs a registry URL to be read.

Datum conventions (see :mod:`pipeline.serde.store`): ``timestamp-millis`` fields are ``int`` epoch
milliseconds and ``uuid`` fields are ``str``, both ways; enums are their symbol strings (the
:mod:`pipeline.serde.codes` ``StrEnum`` members are accepted); union-of-record fields (``payload``,
``output``) are plain dicts, and the codec adds fastavro's tuple hint itself from the dict's keys.

Speed: schemas are parsed once per process; each (writer, reader) pair is checked and cached the first time
a fingerprint or id is seen; the hot path is a dict lookup, one read of the body and a length check. A
request of ours is read by its direct reader (:mod:`pipeline.serde.request_wire`), anything else by
fastavro.

Hostile bytes: the size cap is checked before anything else; a writer schema is refused once when reading
it could cost more than a record's bytes (:mod:`pipeline.serde.schema_guard`); a writer that is a later
version of our own record and that our reader cannot resolve is ``SCHEMA_TOO_NEW``; every message shows
the record's first bytes in hex (:func:`~pipeline.serde.limits.show_bytes`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import fastavro
from fastavro import schemaless_writer

from pipeline.serde import _fastpath
from pipeline.serde.codes import ErrorCode
from pipeline.serde.errors import DecodeError, EncodeError, EventError, SchemaStoreError
from pipeline.serde.fingerprint import (
    CONFLUENT_HEADER_LEN,
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_HEADER_LEN,
    SINGLE_OBJECT_MAGIC,
    rabin_fingerprint,
)
from pipeline.serde.limits import DEFAULT_LIMITS, Limits, items_over, show_bytes
from pipeline.serde.registry import RegistrySchemas, shared_registry, value_subject
from pipeline.serde.schema_guard import unbounded_reads
from pipeline.serde.store import SchemaStore, SchemaVersion, shared_store, strip_logical_types
from pipeline.serde.writers import Reading, cut_text, pair, union_hints

if TYPE_CHECKING:
    from pipeline.config import Settings

RecordType = Literal["request", "result", "error"]
Framing = Literal["single-object", "confluent"]
Datum = dict[str, Any]
Validator = Callable[[Datum], None]

CHAINS: dict[RecordType, str] = {
    "request": "inference_request",
    "result": "inference_result",
    "error": "inference_error",
}

_SO_MAGIC0 = SINGLE_OBJECT_MAGIC[0]
_SO_MAGIC1 = SINGLE_OBJECT_MAGIC[1]


class EventCodec:
    """Encode and decode one record type (request, result or error); safe to share between threads.

    ``encode`` raises :class:`EncodeError`; ``decode`` raises :class:`DecodeError` (framing, schema, body) or,
    when a validator is set, :class:`~pipeline.serde.errors.ValidationError`; both are :class:`EventError`.
    Registry trouble raises :class:`~pipeline.serde.errors.RegistryUnavailable`: not the event's fault.
    """

    def __init__(
        self,
        store: SchemaStore,
        chain: str,
        *,
        framing: Framing = "single-object",
        registry: RegistrySchemas | None = None,
        topic: str | None = None,
        max_message_bytes: int = 1_000_000,
        writer_version: int | None = None,
        reader_version: int | None = None,
        validator: Validator | None = None,
        fast_path: bool = True,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if framing == "confluent" and registry is None:
            raise SchemaStoreError("the confluent framing needs a schema registry (schema_registry_url)")
        self.store = store
        self.chain = chain
        self.framing: Framing = framing
        self.registry = registry
        self.topic = topic
        self.max_message_bytes = max_message_bytes
        self.writer_schema: SchemaVersion = store.get(chain, writer_version)
        self.reader_schema: SchemaVersion = store.get(chain, reader_version)
        self.validator = validator
        self.limits = limits
        self._write_parsed = self.writer_schema.parsed
        self._so_header = SINGLE_OBJECT_MAGIC + self.writer_schema.fingerprint
        self._confluent_headers: dict[str, bytes] = {}
        self._by_fingerprint: dict[bytes, Reading] = {}
        self._by_id: dict[int, Reading] = {}
        self._hints = union_hints(self.writer_schema.schema)
        self._fast_path = fast_path
        self._fast_write = _fastpath.entry_points()[0] if fast_path else None
        self._write_named = _fastpath.named_types(self._write_parsed)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        record_type: RecordType,
        *,
        topic: str | None = None,
        validate: bool = True,
        writer_version: int | None = None,
        reader_version: int | None = None,
        registry: RegistrySchemas | None = None,
    ) -> EventCodec:
        """The codec the processors use: framing, registry, schemas folder and size limit from Settings.

        The Confluent framing is used when ``framing = "confluent"``, or when a registry URL is configured
        and ``framing`` was not set explicitly. ``topic`` is the default topic for registry subjects
        (input for requests, output for results, error for errors). ``validate`` runs the record type's
        semantic checks (requests only) inside :meth:`decode`.
        """
        from pipeline.serde.validation import validator_for

        store = shared_store(settings.schemas_dir)
        url = settings.schema_registry_url
        framing: Framing = settings.framing
        if url and framing == "single-object" and "framing" not in settings.model_fields_set:
            framing = "confluent"
        if registry is None and url:
            registry = shared_registry(settings)
        limits = Limits.from_settings(settings)
        default_topics = {
            "request": settings.topics.input,
            "result": settings.topics.output,
            "error": settings.topics.error,
        }
        return cls(
            store,
            CHAINS[record_type],
            framing=framing,
            registry=registry,
            topic=topic or default_topics[record_type],
            max_message_bytes=settings.max_message_bytes,
            writer_version=writer_version,
            reader_version=reader_version,
            validator=validator_for(record_type, limits) if validate else None,
            limits=limits,
        )

    # ------------------------------------------------------------------ encode

    def encode(self, datum: Datum, topic: str | None = None) -> bytes:
        """One datum -> framed bytes. ``topic`` picks the registry subject (Confluent framing only)."""
        header = self._so_header if self.framing == "single-object" else self._confluent_header(topic)
        data = self._write(header, datum)
        if len(data) > self.max_message_bytes:
            raise EncodeError(
                ErrorCode.TOO_LARGE, f"{len(data)} bytes encoded, max_message_bytes is {self.max_message_bytes}"
            )
        return data

    def encode_many(self, datums: Iterable[Datum], topic: str | None = None) -> list[bytes]:
        """A batch of datums -> framed bytes, one buffer reused for the batch; raises on the first bad datum."""
        header = self._so_header if self.framing == "single-object" else self._confluent_header(topic)
        result: list[bytes] = []
        limit = self.max_message_bytes
        write = self._write
        for datum in datums:
            data = write(header, datum)
            if len(data) > limit:
                raise EncodeError(ErrorCode.TOO_LARGE, f"{len(data)} bytes encoded, max_message_bytes is {limit}")
            result.append(data)
        return result

    def _write(self, header: bytes, datum: Datum) -> bytes:
        """Header + Avro body. fastavro's compiled ``write_data`` straight into a bytearray when it is
        there (skipping ``schemaless_writer``'s per-call schema check and copy), else ``schemaless_writer``.
        """
        try:
            for field_name, table in self._hints:
                value = datum.get(field_name)
                if value.__class__ is dict:
                    for key, branch in table:
                        if key in value:
                            datum = {**datum, field_name: (branch, value)}
                            break
            if self._fast_write is not None:
                buf = bytearray(header)
                self._fast_write(buf, datum, self._write_parsed, self._write_named, "", _fastpath.WRITE_OPTIONS)
                return bytes(buf)
            out = io.BytesIO()
            out.write(header)
            schemaless_writer(out, self._write_parsed, datum)
            return out.getvalue()
        except Exception as exc:
            raise self._encode_error(datum, exc) from None

    def _encode_error(self, datum: Any, exc: Exception) -> EncodeError:
        """Name the offending field: fastavro's own message often does not, its validator does."""
        detail = f"{type(exc).__name__}: {exc}"
        try:
            fastavro.validation.validate(datum, self._write_parsed, raise_errors=True)
        except fastavro.validation.ValidationError as verr:
            detail = "; ".join(str(e) for e in verr.errors) or detail
        except Exception:
            pass
        return EncodeError(ErrorCode.INVALID_DATUM, f"cannot encode {self.writer_schema.label}: {detail}")

    def header(self, topic: str | None = None) -> bytes:
        """The framing's header for records written to ``topic``: what :meth:`encode` puts before the body."""
        return self._so_header if self.framing == "single-object" else self._confluent_header(topic)

    def _confluent_header(self, topic: str | None) -> bytes:
        name = topic or self.topic
        if name is None:
            raise EncodeError(ErrorCode.UNKNOWN_SCHEMA, "the confluent framing needs a topic for the subject")
        header = self._confluent_headers.get(name)
        if header is None:
            assert self.registry is not None
            schema_id = self.registry.id_for(value_subject(name), self.writer_schema.text)
            header = bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")
            self._confluent_headers[name] = header
        return header

    # ------------------------------------------------------------------ decode

    def decode(self, data: bytes | None) -> Datum:
        """Framed bytes -> datum in the reader schema's shape (validated when a validator is set)."""
        reading, start = self._frame(data)
        assert data is not None
        # Fewer body bytes than max_items cannot hold more items (each takes a byte): only longer records
        # are counted before the decoder builds them.
        if reading.count_items is not None and len(data) - start > self.limits.max_items:
            over = reading.count_items(data, start)
            if over is not None:
                raise items_over(*over, self.limits)
        datum, end = reading.read(data, start)
        if end != len(data):
            raise DecodeError(
                ErrorCode.INVALID_DATUM,
                f"{reading.label}: {len(data) - end:,} bytes after the body, which ends at byte {end:,} "
                f"({show_bytes(data)})",
            )
        if self.validator is not None:
            self.validator(datum)
        return datum

    def decode_many(self, values: Sequence[bytes | None]) -> list[Datum | EventError]:
        """A batch: each item is the datum or the :class:`EventError` that event raised (others unaffected)."""
        out: list[Datum | EventError] = []
        decode = self.decode
        for value in values:
            try:
                out.append(decode(value))
            except EventError as exc:
                out.append(exc)
        return out

    def _frame(self, data: bytes | None) -> tuple[Reading, int]:
        """Check size and header; return how to read the body and where it starts."""
        if not data:
            raise DecodeError(ErrorCode.EMPTY, "empty value (no bytes)")
        size = len(data)
        if size > self.max_message_bytes:  # before any other work on the bytes
            raise DecodeError(ErrorCode.TOO_LARGE, f"{size:,} bytes, max_message_bytes is {self.max_message_bytes:,}")
        first = data[0]
        if first == _SO_MAGIC0:
            if size > 1 and data[1] != _SO_MAGIC1:
                raise DecodeError(
                    ErrorCode.BAD_MAGIC,
                    f"single-object magic is C3 01, this record has C3 {data[1]:02X} ({show_bytes(data)})",
                )
            if size < SINGLE_OBJECT_HEADER_LEN:
                raise DecodeError(
                    ErrorCode.TRUNCATED, f"shorter than the single-object header of 10 bytes ({show_bytes(data)})"
                )
            fp = bytes(data[2:SINGLE_OBJECT_HEADER_LEN])
            reading = self._by_fingerprint.get(fp) or self._reading_for_fingerprint(fp, data)
            start = SINGLE_OBJECT_HEADER_LEN
        elif first == CONFLUENT_MAGIC:
            if size < CONFLUENT_HEADER_LEN:
                raise DecodeError(
                    ErrorCode.TRUNCATED, f"shorter than the Confluent header of 5 bytes ({show_bytes(data)})"
                )
            schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_LEN], "big")
            reading = self._by_id.get(schema_id) or self._reading_for_id(schema_id)
            start = CONFLUENT_HEADER_LEN
        else:
            raise DecodeError(
                ErrorCode.BAD_MAGIC,
                f"first byte {first:02X} is neither C3 (single-object) nor 00 (Confluent) ({show_bytes(data)})",
            )
        if reading.error is not None:
            raise DecodeError(reading.code, reading.error)
        return reading, start

    def _reading_for_fingerprint(self, fp: bytes, data: bytes) -> Reading:
        found = self.store.by_fingerprint(fp)
        if found is None:
            # Eight bytes cannot say whether they name a version newer than ours or nothing at all: the
            # message says both. (In registry mode the schema itself can tell: SCHEMA_TOO_NEW.)
            versions = self.store.chains.get(self.chain, [])
            raise DecodeError(
                ErrorCode.UNKNOWN_SCHEMA,
                f"unknown writer schema: fingerprint {fp.hex(' ')} is none of the {sum(1 for _ in self.store)} "
                f"schemas this pipeline ships ({self.chain} v1..v{len(versions)}); written with a schema newer "
                f"than this pipeline's, or not an event of ours ({show_bytes(data)})",
            )
        reading = self._pair(found.schema, found.parsed, found.fingerprint, found.label, found)
        self._by_fingerprint[fp] = reading
        return reading

    def _reading_for_id(self, schema_id: int) -> Reading:
        if self.registry is None:
            raise DecodeError(
                ErrorCode.UNKNOWN_SCHEMA,
                f"unknown writer schema: a Confluent frame (registry id {schema_id}, header bytes 00 "
                f"{schema_id.to_bytes(4, 'big').hex(' ')}) but no schema registry is configured",
            )
        text = self.registry.text_for(schema_id)
        label = f"registry id {schema_id}"
        try:
            schema = json.loads(text)
            refused = unbounded_reads(schema)
            if refused is not None:  # before anything else walks it: fastavro's parser recurses too
                reading = Reading(None, None, label, f"{label}: writer schema refused, {refused}")
                self._by_id[schema_id] = reading
                return reading
            fp = rabin_fingerprint(schema)
            local = self.store.by_fingerprint(fp)
            parsed = local.parsed if local is not None else fastavro.parse_schema(strip_logical_types(schema))
        except Exception as exc:
            reading = Reading(None, None, label, f"{label}: writer schema does not parse: {cut_text(exc)}")
        else:
            reading = self._pair(schema, parsed, fp, label if local is None else f"{label} ({local.label})", local)
        self._by_id[schema_id] = reading
        return reading

    def _pair(
        self, writer_json: Any, writer_parsed: Any, writer_fp: bytes, label: str, known: SchemaVersion | None
    ) -> Reading:
        max_items = self.limits.max_items if self.validator is not None else None
        reader = self.reader_schema
        return pair(reader, self.store, writer_json, writer_parsed, writer_fp, label, known, max_items, self._fast_path)


@dataclass(frozen=True)
class Codecs:
    """The three codecs a worker needs, built from one Settings."""

    request: EventCodec
    result: EventCodec
    error: EventCodec

    @classmethod
    def from_settings(cls, settings: Settings, *, validate: bool = True) -> Codecs:
        return cls(
            request=EventCodec.from_settings(settings, "request", validate=validate),
            result=EventCodec.from_settings(settings, "result", validate=False),
            error=EventCodec.from_settings(settings, "error", validate=False),
        )
