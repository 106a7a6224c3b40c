"""What the input fuzzers feed the input stage: valid requests of both schema versions in both framings,
mutations of them, random headers, and an oracle that says whether an accepted request is really valid.

Shared by ``tests/stages/test_fuzz.py`` and the optional atheris harness (``scripts/fuzz_atheris.py``).
The oracle checks an accepted datum with numpy and the uuid module, not with ``pipeline.serde.validation``,
so that a rule the validator forgets shows up as an accepted request the oracle refuses.
"""

from __future__ import annotations

import collections
import json
import math
import random
import string
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.serde import ErrorCode, EventCodec, EventError, SchemaStore, Stage, build_request, validate_request
from pipeline.serde.limits import DEFAULT_LIMITS, Limits
from pipeline.serde.registry import RegistrySchemas, client_module
from pipeline.serde.validation import WIRE_DTYPES

REQ = "inference_request"
MODELS = ("tiny", "minilm-l6", "no-such-model", "")
Headers = list[tuple[str, bytes | None]] | None


def zigzag(n: int) -> bytes:
    """Avro's long encoding of any 64-bit value, hostile ones included."""
    z = ((n << 1) ^ (n >> 63)) & (2**64 - 1)
    out = bytearray()
    while True:
        low, z = z & 0x7F, z >> 7
        out.append(low | (0x80 if z else 0))
        if not z:
            return bytes(out)


# Varints a mutation splices in: counts and lengths from 2**62 to the most negative, a zero block count,
# one that never ends, and the over-long forms a careless decoder would shift past 64 bits.
BLOWUPS = [zigzag(v) for v in (2**62, -(2**62), 2**63 - 1, -(2**63), 2**31, -1, 0, 1, 10_001, 99_999)] + [
    b"\xff" * 12,
    b"\x80" * 11 + b"\x01",
    b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",
]


@dataclass
class Corpus:
    """Seed records (valid requests, framed) and the registry they were registered in."""

    seeds: list[bytes]
    kinds: list[str]
    """Per seed: ``v1 single-object``, ``v2 confluent``, ..., or ``hostile`` (a hostile writer's frame)."""
    large: list[bytes]
    """Seeds longer than ``max_items`` bytes, whose items are counted on the bytes before decoding."""
    registry: RegistrySchemas
    hostile_ids: dict[str, int] = field(default_factory=dict)


def _text(rng: random.Random, n: int) -> str:
    alphabet = string.ascii_letters + string.digits + " \n\t" + "éß中文🙂\u200b"
    return "".join(rng.choice(alphabet) for _ in range(n)) or "x"


def _request(rng: random.Random, with_tenant: bool) -> dict[str, Any]:
    model = rng.choice(MODELS)
    attributes = {_text(rng, rng.randint(1, 6)): _text(rng, rng.randint(0, 10)) for _ in range(rng.randint(0, 3))}
    common: dict[str, Any] = {
        "model": model,
        "source": _text(rng, rng.randint(0, 12)),
        "priority": rng.choice(["LOW", "NORMAL", "HIGH"]),
        "attributes": attributes,
        "correlation_id": rng.choice([None, _text(rng, 8)]),
        "created_at": rng.randint(0, 2**45),
    }
    if rng.random() < 0.4:
        request = build_request(text=_text(rng, rng.randint(1, 120)), **common)
    else:
        tensors = {}
        for i in range(rng.randint(1, 3)):
            dtype = rng.choice(sorted(WIRE_DTYPES))
            shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 3)))
            data = np.random.default_rng(rng.randint(0, 2**32)).integers(0, 2, size=shape)
            tensors[f"t{i}" if i else "x"] = data.astype(dtype)
        request = build_request(tensors=tensors, **common)
    if with_tenant:
        request["tenant"] = rng.choice([None, _text(rng, 6)])
    return request


def build_corpus(store: SchemaStore, seed: int = 7, n: int = 160) -> Corpus:
    """``n`` valid requests, each written with v1 or v2 in the single-object or the Confluent framing (a
    ``mock://`` registry), a few large ones (past ``max_items`` bytes, so that their items are counted on
    the bytes first), and frames naming the registry's hostile writer schemas."""
    rng = random.Random(seed)
    registry = RegistrySchemas.from_url(f"mock://fuzz-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}")
    writers = {
        (version, framing): EventCodec(
            store, REQ, writer_version=version, framing=framing, registry=registry, topic="fuzz.input"
        )
        for version in (1, 2)
        for framing in ("single-object", "confluent")
    }
    seeds, kinds = [], []
    for _ in range(n):
        version, framing = rng.choice(sorted(writers))
        seeds.append(writers[(version, framing)].encode(_request(rng, with_tenant=version == 2)))
        kinds.append(f"v{version} {framing}")
    v2 = writers[(2, "single-object")]
    big_text = build_request(model="tiny", text=_text(rng, 12_000))
    big_tensor = build_request(model="tiny", tensors={"x": np.ones((40, 100), np.float32)})
    many = build_request(model="tiny", text="many", attributes={f"k{i}": "v" * 24 for i in range(400)})
    large = [v2.encode(big_text), v2.encode(big_tensor), v2.encode(many), writers[(2, "confluent")].encode(big_tensor)]
    hostile = _register_hostile(store, registry)
    body = v2.encode(build_request(model="tiny", text="hostile"))[10:]
    seeds += [b"\x00" + schema_id.to_bytes(4, "big") + body for schema_id in hostile.values()]
    kinds += ["hostile"] * len(hostile)
    return Corpus(seeds, kinds, large, registry, hostile)


def _register_hostile(store: SchemaStore, registry: RegistrySchemas) -> dict[str, int]:
    """Writer schemas an upstream team could register under the input subject: a later version we cannot
    read, one with a skipped array of nulls, a recursive one, and another record altogether."""
    base = json.loads(store.get(REQ).text)
    too_new = json.loads(json.dumps(base))
    too_new["fields"][1]["type"] = "string"  # created_at
    nulls = json.loads(json.dumps(base))
    nulls["fields"].append({"name": "junk", "type": {"type": "array", "items": "null"}, "default": []})
    node = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    recursive = json.loads(json.dumps(base))
    recursive["fields"].append({"name": "chain", "type": ["null", node], "default": None})
    schemas = {
        "too_new": too_new,
        "nulls": nulls,
        "recursive": recursive,
        "result": json.loads(store.get("inference_result").text),
    }
    module = client_module()
    return {
        name: int(registry.client.register_schema(f"hostile.{name}-value", module.Schema(json.dumps(s), "AVRO")))
        for name, s in schemas.items()
    }


# ------------------------------------------------------------------ mutations


def _n(rng: random.Random, n: int) -> int:
    """0 <= k < n: ``randrange`` costs five times as much, and a million mutants call this often."""
    return int(rng.random() * n)


def _pick(rng: random.Random, items: Sequence[Any]) -> Any:
    return items[int(rng.random() * len(items))]


def _flip(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    if data:
        for _ in range(1 + _n(rng, 4)):
            data[_n(rng, len(data))] ^= 1 << _n(rng, 8)
    return data


_POKES = (0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF)


def _poke(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    if data:
        data[_n(rng, len(data))] = _pick(rng, _POKES) if rng.random() < 0.7 else _n(rng, 256)
    return data


def _truncate(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    return data[: _n(rng, len(data) + 1)]


def _splice(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    other = _pick(rng, seeds)
    return data[: _n(rng, len(data) + 1)] + other[_n(rng, len(other) + 1) :]


def _insert(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    at = _n(rng, len(data) + 1)
    return data[:at] + rng.randbytes(1 + _n(rng, 8)) + data[at:]


def _delete(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    at = _n(rng, len(data) + 1)
    return data[:at] + data[at + 1 + _n(rng, 8) :]


def _blowup(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    """A hostile varint where a count or a length may be: over the bytes there, or in front of them."""
    at = 10 + _n(rng, max(1, len(data) - 9))
    big = _pick(rng, BLOWUPS)
    cut = at + (len(big) if rng.random() < 0.5 else 0)
    return data[:at] + big + data[cut:]


def _repeat(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    at = _n(rng, len(data) + 1)
    chunk = data[at : at + 1 + _n(rng, 16)]
    return data[:at] + chunk * (2 + _n(rng, 63)) + data[at:]


def _header(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    """Another frame's header: a random fingerprint, or a registry id that is small, random or huge."""
    if rng.random() < 0.5:
        return bytearray(b"\xc3\x01" + rng.randbytes(8)) + data[10:]
    schema_id = _pick(rng, (_n(rng, 13), rng.getrandbits(32), 2**31 - 1))
    return bytearray(b"\x00" + schema_id.to_bytes(4, "big")) + data[5:]


def _random(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    prefix = _pick(rng, (b"", b"", b"\xc3\x01", bytes(data[:10]), bytes(data[:5])))
    return bytearray(prefix + rng.randbytes(_n(rng, 49)))


MUTATIONS: list[Callable[[random.Random, bytearray, list[bytes]], bytearray]] = [
    _flip,
    _flip,
    _poke,
    _truncate,
    _splice,
    _insert,
    _delete,
    _blowup,
    _blowup,
    _repeat,
    _header,
    _random,
]


def mutant(rng: random.Random, seeds: list[bytes], rare: Sequence[bytes] = ()) -> bytes | None:
    """A seed after one to three mutations; now and then nothing at all, or a seed as it is. One in two
    hundred starts from a ``rare`` seed (the large ones: each costs the decoder ten small ones)."""
    roll = rng.random()
    if roll < 0.002:
        return None
    data = bytearray(_pick(rng, rare if rare and rng.random() < 0.005 else seeds))
    if roll < 0.03:
        return bytes(data)
    for _ in range(1 if roll < 0.6 else 2 + _n(rng, 2)):
        data = _pick(rng, MUTATIONS)(rng, data, seeds)
    return bytes(data)


HUGE = b"\xab" * 200_000


def headers(rng: random.Random) -> Headers:
    """None, none, binary, empty, huge, a trace context (carried to the error event), stale context."""
    roll = rng.random()
    if roll < 0.3:
        return None
    if roll < 0.4:
        return []
    keys = ["traceparent", "tracestate", "", "x", "\u00e9\x00", "__pipeline.errors.stage", "__pipeline.redrive.count"]
    values: list[bytes | None] = [None, b"", rng.randbytes(rng.randint(1, 64)), HUGE, b"00-ab-cd-01"]
    return [(rng.choice(keys), rng.choice(values)) for _ in range(rng.randint(1, 4))]


# ------------------------------------------------------------------ the oracle


@dataclass
class Tally:
    """What a run of mutants through decode and validation came to."""

    inputs: int = 0
    accepted: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    """Inputs that broke a rule (an untyped exception, a code UNKNOWN, an accepted invalid request)."""
    seconds: float = 0.0


def request_codec(store: SchemaStore, corpus: Corpus) -> EventCodec:
    """The input stage's request codec, reading both framings (the Confluent one through the corpus's
    registry) and validating with the default limits."""
    return EventCodec(
        store, REQ, framing="confluent", registry=corpus.registry, topic="fuzz.input", validator=validate_request
    )


def run_mutants(seed: int, n: int, schemas_dir: str | None = None) -> Tally:
    """``n`` seeded mutants through decode and validation, each input judged: a fresh corpus and codec, so
    that it runs the same in a process of its own."""
    from pipeline.serde.store import shared_store

    store = shared_store(schemas_dir or Path(__file__).resolve().parents[2] / "schemas")
    corpus = build_corpus(store)
    decode = request_codec(store, corpus).decode
    seeds, large = corpus.seeds, corpus.large
    rng = random.Random(seed)
    codes: collections.Counter[str] = collections.Counter()
    tally = Tally(inputs=n)
    typed = (Stage.DECODE, Stage.VALIDATE)
    started = time.perf_counter()
    for _ in range(n):
        value = mutant(rng, seeds, large)
        try:
            datum = decode(value)
        except EventError as exc:
            codes[exc.code] += 1
            if exc.code is ErrorCode.UNKNOWN or exc.stage not in typed:
                tally.failures.append(f"{value!r}: {exc!r} is not a typed decode or validation failure")
            continue
        except Exception as exc:  # the failure this hunts for: report it with its input
            tally.failures.append(f"{value!r} raised {type(exc).__name__}: {exc}")
            continue
        tally.accepted += 1
        wrong = really_valid(datum, DEFAULT_LIMITS)
        if wrong is not None:
            tally.failures.append(f"{value!r} accepted: {wrong}")
        if len(tally.failures) >= 5:
            break
    tally.seconds = time.perf_counter() - started
    tally.codes = {str(code): count for code, count in codes.items()}
    return tally


def really_valid(datum: dict[str, Any], limits: Limits) -> str | None:
    """What is wrong with an accepted request, judged without the validator; None when nothing is."""
    event_id = datum.get("event_id")
    try:
        if str(uuid.UUID(event_id)) != event_id.lower() or len(event_id) != 36:
            return f"event_id {event_id!r} is not canonical"
    except (ValueError, TypeError, AttributeError):
        return f"event_id {event_id!r} is not a UUID"
    strings = [datum.get("source"), datum.get("correlation_id"), datum.get("tenant")]
    strings += [datum["model"]["name"], datum["model"].get("version")]
    attributes = datum.get("attributes") or {}
    strings += [*attributes, *attributes.values()]
    payload = datum["payload"]
    items = len(attributes)
    if "text" in payload:
        if not payload["text"].strip():
            return "blank text"
        strings.append(payload["text"])
    else:
        tensors = payload["tensors"]
        names = [t["name"] for t in tensors]
        if not tensors or len(set(names)) != len(names):
            return "no tensors, or a name twice"
        items += len(tensors)
        for t in tensors:
            strings += [t["name"], t["dtype"]]
            if t["dtype"] not in WIRE_DTYPES or any(d < 0 for d in t["shape"]) or len(t["shape"]) > 64:
                return f"tensor {t['name']!r}: dtype or shape"
            items += len(t["shape"])
            if math.prod(max(d, 1) for d in t["shape"]) > limits.max_tensor_elements:
                return f"tensor {t['name']!r}: past max_tensor_elements"
            array = np.frombuffer(t["data"], dtype=WIRE_DTYPES[t["dtype"]].numpy()).reshape(t["shape"])
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                return f"tensor {t['name']!r}: not finite"
    if items > limits.max_items:
        return f"{items} items"
    if any(isinstance(s, str) and len(s) > limits.max_text_chars for s in strings):
        return "a string past max_text_chars"
    return None
