"""What ``pipeline schemas check`` verifies, as data: one :class:`Finding` per problem, empty when all is well.

1. Every version chain is backward and forward compatible, pair by pair (the ``avro`` library's checker):
   any reader version can read any writer version of its chain.
2. Every field of every record carries a ``doc``, and every enum a ``default`` symbol (so that a later
   version may add symbols).
3. Every example in ``<chain>/examples/v<N>-<name>.json`` (Avro's JSON encoding of one datum written with
   ``vN``) parses, encodes, decodes with every version of its chain as reader, and passes the semantic
   validation of its record type.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.json_read import json_reader

from pipeline.serde.codec import CHAINS, EventCodec
from pipeline.serde.compat import incompatibilities
from pipeline.serde.errors import EventError, SchemaStoreError
from pipeline.serde.store import SchemaStore, SchemaVersion
from pipeline.serde.validation import VALIDATORS

_EXAMPLE = re.compile(r"^v(\d+)-[\w.-]+\.json$")


@dataclass(frozen=True)
class Finding:
    """One problem: ``kind`` (compatibility, docs, example, store), where, and what."""

    kind: str
    where: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    findings: list[Finding]
    pairs_checked: int
    examples_checked: int
    chains: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.findings


def _walk_records(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named record and enum in a JSON schema, with a dotted path to where it is."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _walk_records(branch, path)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum"):
            yield path, schema
        if kind in ("record", "error"):
            for fld in schema.get("fields", []):
                yield from _walk_records(fld.get("type"), f"{path}.{fld.get('name')}")
        elif kind == "array":
            yield from _walk_records(schema.get("items"), f"{path}[]")
        elif kind == "map":
            yield from _walk_records(schema.get("values"), f"{path}{{}}")
        elif isinstance(kind, dict | list):
            yield from _walk_records(kind, path)


def check_docs(sv: SchemaVersion) -> list[Finding]:
    findings = []
    for path, node in _walk_records(sv.schema, str(sv.schema.get("name"))):
        if node.get("type") == "enum":
            if node.get("default") not in node.get("symbols", []):
                findings.append(Finding("enum-default", sv.label, f"enum {node.get('name')} at {path} has no default"))
            continue
        for fld in node.get("fields", []):
            if not str(fld.get("doc", "")).strip():
                findings.append(Finding("docs", sv.label, f"field {path}.{fld.get('name')} has no doc"))
    return findings


def check_chain(versions: list[SchemaVersion]) -> tuple[list[Finding], int]:
    """Every ordered pair of versions, both ways: backward (new reads old) and forward (old reads new)."""
    findings: list[Finding] = []
    pairs = 0
    for reader in versions:
        for writer in versions:
            if reader is writer:
                continue
            pairs += 1
            direction = "backward" if reader.version > writer.version else "forward"
            for problem in incompatibilities(reader.schema, writer.schema):
                findings.append(
                    Finding(
                        f"{direction}-compatibility",
                        f"{writer.label} -> {reader.label}",
                        f"v{reader.version} cannot read v{writer.version}: {problem}",
                    )
                )
    return findings, pairs


def load_example(path: Path, sv: SchemaVersion) -> dict[str, Any]:
    """An example file (Avro JSON encoding, pretty-printed) -> a datum in the codec's conventions."""
    obj = json.loads(path.read_text(encoding="utf-8"))
    return next(iter(json_reader(io.StringIO(json.dumps(obj)), sv.parsed)))  # type: ignore[arg-type]


def check_example(store: SchemaStore, chain: str, path: Path) -> list[Finding]:
    where = f"{chain}/examples/{path.name}"
    match = _EXAMPLE.match(path.name)
    if not match:
        return [Finding("example", where, "name must be v<N>-<name>.json (N: the writer schema's version)")]
    try:
        sv = store.get(chain, int(match.group(1)))
    except SchemaStoreError as exc:
        return [Finding("example", where, str(exc))]
    try:
        datum = load_example(path, sv)
        fastavro.validation.validate(datum, sv.parsed, raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        return [Finding("example", where, f"does not match {sv.label}: {'; '.join(map(str, exc.errors))}")]
    except Exception as exc:
        return [Finding("example", where, f"does not parse as {sv.label}: {type(exc).__name__}: {exc}")]
    record_type = next((rt for rt, c in CHAINS.items() if c == chain), None)
    validator = VALIDATORS.get(record_type) if record_type else None
    findings = []
    writer = EventCodec(store, chain, writer_version=sv.version)
    try:
        data = writer.encode(datum)
    except EventError as exc:
        return [Finding("example", where, f"cannot be encoded: {exc}")]
    for reader_sv in store.chains[chain]:
        reader = EventCodec(store, chain, reader_version=reader_sv.version, validator=validator)
        try:
            reader.decode(data)
        except EventError as exc:
            findings.append(Finding("example", where, f"read as {reader_sv.label}: {exc.code.value}: {exc}"))
    return findings


def run_check(root: Path) -> CheckReport:
    """Everything ``pipeline schemas check`` verifies for the schemas folder at ``root``."""
    try:
        store = SchemaStore.load(root)
    except SchemaStoreError as exc:
        return CheckReport([Finding("store", str(root), str(exc))], 0, 0, {})
    findings: list[Finding] = []
    pairs = examples = 0
    for chain, versions in store.chains.items():
        for sv in versions:
            findings.extend(check_docs(sv))
        chain_findings, n = check_chain(versions)
        findings.extend(chain_findings)
        pairs += n
        example_dir = root / chain / "examples"
        if example_dir.is_dir():
            for path in sorted(example_dir.glob("*.json")):
                examples += 1
                findings.extend(check_example(store, chain, path))
    for record_type, chain in CHAINS.items():
        if chain not in store.chains:
            findings.append(Finding("store", str(root), f"no {chain}/ chain (the {record_type} schema)"))
    return CheckReport(findings, pairs, examples, {c: len(v) for c, v in store.chains.items()})
